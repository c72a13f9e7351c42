"""ewms_pilot — the pilot: one batch job, thousands of events."""
