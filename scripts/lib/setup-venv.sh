# Shared by run-server, run-tests and lint: make .venv with Python >= 3.11 and install the project.
# Usage: setup_venv "<extras>"   (e.g. "" or "test,lint")

PYTHON_BIN=${PYTHON:-python3}

apt_install() {
    # Installs Debian packages when we are root; otherwise says what is missing.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing Debian packages: $*" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
        fi
    else
        echo "Missing Debian packages: $* (run as root, or: sudo apt-get install $*)" >&2
        return 1
    fi
}

setup_venv() {
    local extras=$1
    if ! "$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "SalesInbox needs Python 3.11 or newer as $PYTHON_BIN (set PYTHON=/path/to/python3.11)." >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        if ! "$PYTHON_BIN" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            apt_install python3-venv
            "$PYTHON_BIN" -m venv .venv
        fi
    fi
    local target=.
    [ -n "$extras" ] && target=".[$extras]"
    # Reinstall only when the requirements changed since the last install.
    local stamp=.venv/.salesinbox-installed
    local hash installed=""
    hash=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
    [ -f "$stamp" ] && installed=$(cat "$stamp")
    # An install with extras also serves a run without them (run-server after run-tests).
    if [ "$installed" != "$hash-$extras" ] && { [ -n "$extras" ] || [ "${installed%%-*}" != "$hash" ]; }; then
        echo "Installing SalesInbox and its dependencies into .venv ..." >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$target"
        echo "$hash-$extras" > "$stamp"
    fi
}
