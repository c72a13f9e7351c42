# shellcheck shell=bash
# Shared helper, sourced by scripts/dev-services, scripts/test and .ci/run.
#
# Defines REPO_ROOT, VENV, PY and the function `ensure_venv`, which makes sure that
#   - .venv exists and has a working pip (created with `python3 -m venv`; as root, the Debian package
#     python3-venv is installed when ensurepip is missing), and
#   - the project is installed into it (`pip install -e '.[dev]'`), again whenever pyproject.toml is
#     newer than the stamp file .venv/.installed.
# Logs go to stderr so callers may keep stdout for their own output.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"
VENV_STAMP="$VENV/.installed"

_venv_log() { echo "[venv] $*" >&2; }

_venv_usable() {
    [ -x "$PY" ] && "$PY" -c 'import pip' >/dev/null 2>&1
}

_venv_create() {
    local python3_bin
    python3_bin="$(command -v python3 || true)"
    if [ -z "$python3_bin" ]; then
        _venv_log "python3 not found; install Python 3.11+ first"
        return 1
    fi
    _venv_log "creating $VENV with $python3_bin"
    if "$python3_bin" -m venv --clear "$VENV" >&2; then
        return 0
    fi
    # Debian splits venv/ensurepip into python3-venv; a failed attempt leaves a half-made .venv behind.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        _venv_log "python3 -m venv failed; installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 \
            || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2; } \
            || return 1
        "$python3_bin" -m venv --clear "$VENV" >&2
    else
        _venv_log "python3 -m venv failed; install python3-venv (as root: apt-get install -y python3-venv)"
        return 1
    fi
}

_venv_needs_install() {
    [ ! -f "$VENV_STAMP" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$VENV_STAMP" ]
}

ensure_venv() {
    # Serialise concurrent callers (e.g. two terminals running scripts/test) while creating/installing.
    local lock_fd
    mkdir -p "$REPO_ROOT/.local/run"
    if command -v flock >/dev/null 2>&1; then
        exec {lock_fd}>"$REPO_ROOT/.local/run/venv.lock"
        flock -w 900 "$lock_fd" || { _venv_log "timed out waiting for the venv lock"; return 1; }
    fi
    local rc=0
    {
        if ! _venv_usable; then
            _venv_create && rm -f "$VENV_STAMP"
        fi
    } || rc=$?
    if [ "$rc" = 0 ] && ! _venv_usable; then
        _venv_log "$VENV has no working pip after creation"
        rc=1
    fi
    if [ "$rc" = 0 ] && _venv_needs_install; then
        _venv_log "installing the project: pip install -e '.[dev]'"
        if (cd "$REPO_ROOT" && "$PY" -m pip install --disable-pip-version-check -q -e '.[dev]' >&2); then
            touch "$VENV_STAMP"
        else
            _venv_log "pip install -e '.[dev]' failed"
            rc=1
        fi
    fi
    if [ -n "${lock_fd:-}" ]; then
        exec {lock_fd}>&-
    fi
    return "$rc"
}
