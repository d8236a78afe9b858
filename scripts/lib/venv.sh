# shellcheck shell=bash
# Sourced by scripts/test and scripts/deploy-dev: make .venv with a Python the
# project supports, and install a requirements file only when it changed.
#   ensure_venv requirements.txt

# pyproject.toml's requires-python (tests/test_dev_shell.py keeps the two in step).
LUNA_PY_MIN=3.11
LUNA_PY_BELOW=3.14

_py_ok() {  # _py_ok PYTHON: its version is within [LUNA_PY_MIN, LUNA_PY_BELOW)
  "$1" -c "import sys; lo = tuple(map(int, '$LUNA_PY_MIN'.split('.'))); \
hi = tuple(map(int, '$LUNA_PY_BELOW'.split('.'))); sys.exit(0 if lo <= sys.version_info[:2] < hi else 1)" \
    >/dev/null 2>&1
}

_py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "unusable"; }

ensure_venv() {
  local requirements=$1 py=${PYTHON:-python3} stamp
  if [ -e .venv ] && ! _py_ok .venv/bin/python; then
    echo "note: .venv has Python $(_py_version .venv/bin/python); the project needs >=$LUNA_PY_MIN,<$LUNA_PY_BELOW: rebuilding it" >&2
    rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    if ! _py_ok "$py"; then
      echo "error: $py is Python $(_py_version "$py"); the project needs >=$LUNA_PY_MIN,<$LUNA_PY_BELOW (set PYTHON=/path/to/python3.12)" >&2
      exit 2
    fi
    echo "creating .venv with $py ($(_py_version "$py"))" >&2
    "$py" -m venv .venv
  fi
  # Reinstall only when the requirements (or the project they install) changed.
  stamp=$(cat "$requirements" requirements.txt pyproject.toml | sha256sum | cut -c1-64)
  if [ "$(cat ".venv/.luna-${requirements%.txt}.sha256" 2>/dev/null)" != "$stamp" ]; then
    if [[ $requirements == *.lock ]]; then
      # A lock (scripts/lock): every file checked against its hash, nothing resolved;
      # then this project itself, built with the lock's setuptools.
      .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$requirements"
      .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    else
      .venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
    fi
    echo "$stamp" > ".venv/.luna-${requirements%.txt}.sha256"
  fi
}
