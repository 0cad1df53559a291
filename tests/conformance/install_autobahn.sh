#!/usr/bin/env bash
# Puts the Autobahn|Testsuite (PyPI's `autobahntestsuite`, unmodified) into a CPython 2.7
# virtualenv under target/autobahn and prints the path of its `wstest`. The suite is Python 2
# code; it needs a CPython 2.7 (pyenv's, or PY2=/path/to/python2.7) and a C compiler (two of
# its dependencies build from source). The first call takes a minute; later ones return at once.
#   usage: tests/conformance/install_autobahn.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
home=$root/target/autobahn
wstest=$home/py27/bin/wstest
if [ -x "$wstest" ] && "$wstest" --autobahnversion >/dev/null 2>&1 \
   && "$home/py27/bin/python" -c 'import wsaccel' 2>/dev/null; then
  echo "$wstest"
  exit 0
fi
python2=${PY2:-}
if [ -z "$python2" ] && command -v pyenv >/dev/null; then
  python2=$(find "$(pyenv root)/versions" -maxdepth 3 -path '*/2.7*/bin/python2.7' 2>/dev/null | sort | tail -1)
fi
if [ -z "$python2" ] || [ ! -x "$python2" ]; then
  cat >&2 <<'MESSAGE'
install_autobahn: no CPython 2.7 found. The Autobahn|Testsuite runs only on Python 2.7:
  pyenv install 2.7.18        (or set PY2=/path/to/python2.7)
MESSAGE
  exit 2
fi
mkdir -p "$home"
# virtualenv 20.22 dropped the creation of Python 2 environments: use the last release before it.
[ -x "$home/maker/bin/virtualenv" ] || {
  python3 -m venv "$home/maker"
  "$home/maker/bin/pip" install -q --disable-pip-version-check 'virtualenv<20.22'
}
rm -rf "$home/py27"
"$home/maker/bin/virtualenv" -q -p "$python2" "$home/py27"
# wsaccel: the C masking and UTF-8 validation the suite uses when present (its last release
# for Python 2.7); without it, sections 12 and 13 spend most of their time masking in Python.
PIP_NO_PYTHON_VERSION_WARNING=1 "$home/py27/bin/pip" install -q --disable-pip-version-check \
  'autobahntestsuite==25.10.1' 'wsaccel==0.6.2'
"$wstest" --autobahnversion >/dev/null 2>&1 || { echo "install_autobahn: wstest does not run" >&2; exit 3; }
echo "$wstest"
