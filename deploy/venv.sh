# Sourced by deploy/test.sh and deploy/up.sh: makes .venv with the project
# installed (editable, with test extras) at the versions of constraints.txt,
# re-installing only when pyproject.toml or constraints.txt changed, and puts it
# first on PATH.
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"
if [[ ! -x $PY ]]; then
    command -v python3.11 >/dev/null || { echo "python3.11 not found: install Python 3.11" >&2; exit 1; }
    echo "[venv] creating $VENV" >&2
    python3.11 -m venv "$VENV"
fi
# The stamp lives in the venv, so a recreated venv always gets installed into.
stamp="$VENV/.storemon-install.sha256"
want="$(cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "[venv] installing the project and its dependencies into $VENV" >&2
    "$PY" -m pip install -q -c "$REPO_ROOT/constraints.txt" -e "$REPO_ROOT[test]"
    echo "$want" >"$stamp"
fi
export PATH="$VENV/bin:$PATH"
