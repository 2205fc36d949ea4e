#!/usr/bin/env bash
# Debian's tools some tests need, installed when missing:
# - the headless browser of the web page's tests (tests/integration/test_web_page.py) and
#   screenshots (python -m tests.integration.screenshots): /usr/bin/chromium and the
#   ChromeDriver of the same version, /usr/bin/chromedriver (packages chromium and
#   chromium-driver);
# - promtool, which checks and unit-tests the alert rules (tests/unit/deploy/test_alerts.py;
#   package prometheus).
# Idempotent: `apt-get update` once, then installs only what is missing; nothing when
# everything is there.
#
#   ./deploy/test-tools.sh            (deploy/test.sh runs it)
#
# STOREMON_CHROMIUM / STOREMON_CHROMEDRIVER name other browser binaries; when both are set
# and executable, the browser is not installed.
set -euo pipefail

say() { printf '[test-tools] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

CHROMIUM="${STOREMON_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${STOREMON_CHROMEDRIVER:-/usr/bin/chromedriver}"

missing=()
[[ -x $CHROMIUM ]] || missing+=(chromium)
[[ -x $CHROMEDRIVER ]] || missing+=(chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]} == 0)); then
    say "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") and promtool: present"
    exit 0
fi

command -v apt-get >/dev/null ||
    die "${missing[*]} missing and no apt-get here: install them (Chromium and its" \
        "ChromeDriver of the same version, or set STOREMON_CHROMIUM and STOREMON_CHROMEDRIVER;" \
        "promtool from Prometheus)"
sudo=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "${missing[*]} missing: installing needs root (or sudo)"
    sudo=(sudo)
fi
say "installing Debian's ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed: cannot install ${missing[*]}"
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed: the browser or alert tests cannot run"
[[ -x $CHROMIUM && -x $CHROMEDRIVER ]] ||
    die "installed, but $CHROMIUM or $CHROMEDRIVER is still missing"
command -v promtool >/dev/null || die "installed, but promtool is still missing"
say "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") and promtool: installed"
