"""The Results store keeps a skymap as its JSON text; what a read answers must not depend on that."""

import json

from skydriver.database.results import SKYMAP_TEXT, result_json

SKYMAP = {"nside-8": {"columns": ["index", "llh"], "data": [[0, 1.5], [1, 2.25]], "metadata": {"nside": 8}}}
SUMMARY = {"best_fit": {"ra": 1.0, "dec": -0.5}, "note": "</script>"}


def test_a_skymap_stored_as_text_reads_as_the_document_clients_always_got() -> None:
    text_doc = {"scan_id": "s1", SKYMAP_TEXT: json.dumps(SKYMAP), "is_final": 1, "summary": SUMMARY}
    nested_doc = {"scan_id": "s1", "skyscan_result": SKYMAP, "is_final": True, "summary": SUMMARY}  # the old form
    expected = {"scan_id": "s1", "skyscan_result": SKYMAP, "is_final": True, "summary": SUMMARY}
    for doc in (text_doc, nested_doc):
        answer = result_json(doc)
        assert json.loads(answer) == expected
        assert list(json.loads(answer)) == list(expected)  # the same key order too
        assert "</" not in answer  # escaped as tornado escapes any JSON it writes


def test_a_result_without_summary_answers_null() -> None:
    doc = {"scan_id": "s2", SKYMAP_TEXT: "{}", "is_final": False}
    assert json.loads(result_json(doc)) == {"scan_id": "s2", "skyscan_result": {}, "is_final": False, "summary": None}
