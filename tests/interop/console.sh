#!/usr/bin/env bash
# The web console in a real browser: Chromium (headless) driven over WebDriver (chromedriver;
# the W3C protocol spoken by a few lines of Python's standard library) against a release build.
# Sign in, find a device by a MAC spelled another way; on its page the effective configuration
# (secrets masked), the override drift (discard, keep for the device), the reset guide with the
# MAC's keystrokes; release, restore and reassign it and see the audit entries; the activity
# page following its live stream; the boot root with config check's findings; a phone's
# User-Agent and an uploaded override carrying markup and script shown as text; profiles and
# site defaults linted; a change without the CSRF token refused; a signed-out session refused.
# Screenshots of each page go to
# $SCREENSHOTS (default: a temporary folder, removed).
# Usage: tests/interop/console.sh [path/to/polyprov]   (default: target/release/polyprov)
set -uo pipefail

BIN=${1:-target/release/polyprov}
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN (cargo build --release)"; exit 2; }
for t in chromium chromedriver curl python3; do
  command -v $t >/dev/null || { echo "$t is not installed (Debian: chromium chromium-driver)"; exit 2; }
done

WORK=$(mktemp -d)
SHOTS=${SCREENSHOTS:-$WORK/shots}
mkdir -p "$SHOTS"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" serve --data "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 >"$WORK/summary" 2>"$WORK/log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
[ -n "$PHONES" ] && [ -n "$ADMIN" ] || { echo "server did not start:"; cat "$WORK/summary" "$WORK/log"; exit 1; }
TOKEN=$(cat "$WORK/data/admin.token")
export POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$TOKEN
"$BIN" device assign 0004f2aa814c --admin-password 'S3cret!' --line '1001@pbx.example.com,1001,x' >/dev/null
# A shared file with a secret in the boot root: the boot root page shows config check's finding.
printf '<polycomConfig><reg reg.1.auth.password="shared"/></polycomConfig>\n' >"$WORK/data/root/site.cfg"
# The phone changed settings in its menu and uploaded them; one value carries markup and script.
printf '<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="1" tcpIpApp.sntp.address="ntp.local" up.welcomeSoundEnabled="&lt;script&gt;alert(3)&lt;/script&gt;"/></PHONE_CONFIG>' >"$WORK/override.cfg"
curl -sf -o /dev/null -u "PlcmSpIp:$(cat "$WORK/data/provisioning.password")" -A 'PolycomVVX-VVX_500-UA/5.9.7.4477' \
  -T "$WORK/override.cfg" "http://$PHONES/0004f2aa814c-phone.cfg"
# A phone whose User-Agent carries markup and script: recorded as it came, shown as text.
curl -s -o /dev/null -A '<script>alert(1)</script><img src=x onerror=alert(2)> PolycomVVX-VVX_500-UA/5.9.7.4477' \
  "http://$PHONES/0004f2aa0bad.cfg"
sleep 1.5   # sightings are written in batches (flush_interval_ms)

DRIVER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$DRIVER_PORT" --allowed-ips=127.0.0.1 >"$WORK/chromedriver.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$DRIVER_PORT/status" >/dev/null && break; sleep 0.1; done

python3 - "$DRIVER_PORT" "$ADMIN" "$TOKEN" "$SHOTS" <<'PY'
import base64, json, subprocess, sys, urllib.request

port, admin, token, shots = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
base = f"http://127.0.0.1:{port}"
passed = failed = 0

def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")["value"]

def eventually(cond, secs=15):
    """A click that submits a form returns before the next page is there: poll for it."""
    import time
    end = time.time() + secs
    while True:
        try:
            if cond():
                return True
        except Exception:
            pass
        if time.time() > end:
            return False
        time.sleep(0.1)

def check(name, ok):
    global passed, failed
    if ok:
        passed += 1; print(f"ok - {name}")
    else:
        failed += 1; print(f"not ok - {name}")

caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]}}}}
sid = call("POST", "/session", caps)["sessionId"]
S = f"/session/{sid}"
go = lambda url: call("POST", S + "/url", {"url": url})
here = lambda: call("GET", S + "/url")
find = lambda css: call("POST", S + "/element", {"using": "css selector", "value": css})["element-6066-11e4-a52e-4f735466cecf"]
# An element found on the page before a navigation goes stale: each action is retried until
# it lands (a send-keys or click either happens whole or fails).
click = lambda css: eventually(lambda: call("POST", f"{S}/element/{find(css)}/click", {}) or True)
type_ = lambda css, t: eventually(lambda: call("POST", f"{S}/element/{find(css)}/value", {"text": t}) or True)
text = lambda: call("POST", S + "/execute/sync", {"script": "return document.body.innerText", "args": []})
js = lambda script: call("POST", S + "/execute/sync", {"script": script, "args": []})
# Controls without a label, and the page's language and headings: what a screen reader needs.
A11Y = """return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim() : (e.labels.length === 0 && !e.getAttribute('aria-label')))
  .map(e => e.outerHTML.slice(0, 80))
  .concat(document.documentElement.lang ? [] : ['no lang'])
  .concat(document.querySelectorAll('h1').length === 1 ? [] : ['not one h1'])"""
unlabelled = {}
def a11y(page):
    unlabelled[page] = js(A11Y)
def shot(name):
    with open(f"{shots}/{name}.png", "wb") as f:
        f.write(base64.b64decode(call("GET", S + "/screenshot")))

try:
    go(admin + "/")
    check("a signed-out browser is sent to the sign-in page", here().endswith("/console/signin"))
    shot("signin")
    type_("#token", "not-the-token"); click("button[type=submit]")
    check("a wrong token is refused with a message", eventually(lambda: "not the admin token" in text()))
    type_("#token", token); click("button[type=submit]")
    check("the admin token signs in and shows the fleet",
          eventually(lambda: here().endswith("/console/devices") and "0004f2aa814c" in text()))
    shot("fleet")
    a11y("fleet")
    cookies = {c["name"]: c for c in call("GET", S + "/cookie")}
    c = cookies.get("polyprov_session", {})
    check("the session cookie is HttpOnly and SameSite=Strict", c.get("httpOnly") is True and c.get("sameSite") == "Strict")
    go(admin + "/console/devices?model=VVX_500&sort=seen")
    check("the fleet filters by model and sorts by last seen (a URL that can be shared)",
          eventually(lambda: "last seen first" in text() and "0004f2aa0bad" in text() and "0004f2aa814c" in text()
                     and js("return document.querySelector('#model').value") == "VVX_500"))
    go(admin + "/console/devices?model=VVX_410")
    check("a model no device has: none listed", eventually(lambda: "No device matches." in text()))
    go(admin + "/console/devices")
    type_("#q", "00-04-F2-AA-81-4C"); click("form.search button")
    check("a MAC in another spelling finds its device",
          eventually(lambda: here().endswith("/console/devices/0004f2aa814c") and "Audit timeline" in text()))
    shot("device")
    check("the device page says what a factory reset would bring back and what blocks remote actions",
          eventually(lambda: "After a factory reset" in text() and "REST API is off" in text()))
    check("a finding's fix is a link to act on it (Release)",
          js("return document.querySelectorAll('ul.findings a.button[href=\"#release\"]').length") > 0)
    check("the effective configuration names each parameter's winning source",
          "Effective configuration after a reset" in text() and "local override (phone menu)" in text() and "ntp.local" in text())
    check("and masks secrets (the admin password is not on the page)", "S3cret!" not in text())
    check("override drift lists what the phone changed against what polyprov serves",
          "Override drift" in text() and "up.backlight.idleIntensity" in text())
    check("an uploaded override carrying markup and script is shown as text",
          "<script>alert(3)</script>" in text() and js("return document.querySelectorAll('script, img').length") == 0)
    check("the reset guide for its model gives the keystrokes that type its MAC",
          "Factory reset guide" in text() and "Typing 0004f2aa814c at the password prompt" in text())
    js("document.getElementById('after-reset').scrollIntoView()")
    shot("device-drift")
    a11y("device")
    row = "tr:has(input[name=param][value='up.backlight.idleIntensity'])"
    js("document.querySelector(\"" + row + " select\").value = 'discard'")
    click(row + " input[name=confirm]"); click(row + " button")
    check("Discard takes the parameter out of the override (a new version), audited",
          eventually(lambda: "override-edited by console" in text() and "Effective configuration" in text()
                     and js("return document.querySelectorAll(\"" + row + "\").length") == 0))
    row = "tr:has(input[name=param][value='tcpIpApp.sntp.address'])"
    js("document.querySelector(\"" + row + " select\").value = 'keep'")
    click(row + " input[name=confirm]"); click(row + " button")
    check("Keep for this device moves the value into the device's own parameters",
          eventually(lambda: js("return document.querySelectorAll(\"" + row + "\").length") == 0
                     and "tcpIpApp.sntp.address=ntp.local" in js("return document.querySelector('#dparams').value")))
    check("the assignment editor does not show the line password (<kept> stands for it)",
          "reg.1.auth.password=<kept>" in js("return document.querySelector('#dparams').value"))
    click("#assignment button")
    eventually(lambda: "Save the assignment" in text())
    kept = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", admin + "/api/v1/devices/0004f2aa814c"],
        capture_output=True, text=True).stdout
    check("and saving the form unchanged keeps it", '"reg.1.auth.password":"x"' in kept.replace(" ", ""))
    type_("#act-reason", "test resync")
    click("form[action$=action] input[name=confirm]")
    click("form[action$=action] button")
    check("Resync from the device page starts a job for that phone, with its own page",
          eventually(lambda: "/console/actions/" in here() and "resync" in text() and "1 phones:" in text()
                     and "0004f2aa814c" in text()))
    shot("job")
    go(admin + "/console/devices/0004f2aa814c")
    eventually(lambda: "Release" in text())
    type_("#release-reason", "desk 12 to desk 40"); click("#release input[name=confirm]"); click("#release button")
    check("Release from the device page: released, and the audit entry is on the timeline",
          eventually(lambda: all(w in text() for w in ["released", "release by console", "desk 12 to desk 40"])))
    shot("device-released")
    type_("#restore-reason", "wrong phone"); click("#restore input[name=confirm]"); click("#restore button")
    check("Restore brings the quarantined override back, audited",
          eventually(lambda: "restore by console" in text() and "wrong phone" in text()))
    type_("#reassign-reason", "desk 40 for Ana"); click("#reassign input[name=confirm]"); click("#reassign button")
    check("Reassign from the device page: assigned again, the reason on the timeline",
          eventually(lambda: "desk 40 for Ana" in text() and js("return document.querySelector('h1 .state').textContent") == "assigned"))
    js("document.querySelector('#act').value = 'factory-reset'")
    type_("#act-reason", "phone leaves the company")
    click("form[action$=action] input[name=confirm]"); click("form[action$=action] button")
    check("Factory reset from the device page is refused until the phones' REST CA is set (the admin password goes to no unverified phone)",
          eventually(lambda: "Not sent" in text() and "rest_ca" in text()))
    shot("factory-reset")
    go(admin + "/console/devices/0004f2aa814c")
    check("and nothing was released for a reset that was not sent",
          eventually(lambda: js("return document.querySelector('h1 .state').textContent") == "assigned"
                     and "phone leaves the company" not in text()))
    go(admin + "/console/activity")
    check("the activity page lists the phones seen last and the security events (the wrong token)",
          eventually(lambda: "Phones seen last" in text() and "0004f2aa814c" in text() and "admin_bad_token" in text()))
    check("and follows the server's live stream (its script allowed by the page's policy, nothing else)",
          eventually(lambda: "Live: updated every few seconds" in text(), secs=20))
    shot("activity")
    a11y("activity")
    click("nav a[href='/console/root']")
    check("the boot root page lists its files and config check's findings",
          eventually(lambda: "site.cfg" in text() and "secret-in-shared-file" in text()))
    shot("boot-root")
    a11y("boot root")
    go(admin + "/console/devices/0004f2aa0bad")
    check("a User-Agent with markup and script is shown as text",
          eventually(lambda: "<script>alert(1)</script>" in text() and "onerror" in text()))
    check("and no script or img element made it into the page",
          js("return document.querySelectorAll('script, img').length") == 0)
    shot("device-xss")
    click("nav a[href='/console/profiles']")
    eventually(lambda: here().endswith("/console/profiles"))
    type_("#pname", "sales"); click("#new-profile button")
    check("a new profile gets its page", eventually(lambda: here().endswith("/console/profiles/sales")))
    type_("#params", "voIpProt.SIP.specialEvent.checkSync.alwaysRebot=1\nnot a parameter line")
    click("button[value=check]")
    check("Check runs the linter: a misspelt name gets its suggestion, a bad line an error",
          eventually(lambda: "did you mean voIpProt.SIP.specialEvent.checkSync.alwaysReboot" in text()
                     and "expected NAME=VALUE" in text()))
    check("and says, before saving, what the change does to the devices it applies to",
          "What this changes for them" in text() and "+ voIpProt.SIP.specialEvent.checkSync.alwaysRebot = \"1\"" in text()
          and js("return document.querySelector('a[href=\"/console/devices?profile=sales\"]') !== null"))
    shot("profile-findings")
    a11y("profile")
    click("button[value=save]")
    check("Save refuses while a finding is an error", eventually(lambda: "Not saved: fix the errors first" in text()))
    eventually(lambda: call("POST", f"{S}/element/{find('#params')}/clear", {}) or True)
    type_("#params", "voIpProt.SIP.specialEvent.checkSync.alwaysReboot=1")
    click("button[value=save]")
    check("a clean profile is saved", eventually(lambda: "Saved; it applies to 0 device(s)" in text()))
    saved = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", admin + "/api/v1/profiles/sales"],
        capture_output=True, text=True).stdout
    check("and the API sees it", '"voIpProt.SIP.specialEvent.checkSync.alwaysReboot":"1"' in saved.replace(" ", ""))
    click("nav a[href='/console/site']")
    eventually(lambda: here().endswith("/console/site"))
    type_("#params", "device.auth.localAdminPassword=Same4All")
    click("button[value=check]")
    check("site defaults: the linter says a shared admin password reaches every phone",
          eventually(lambda: "every phone can download" in text()))
    go(admin + "/console/devices/0004f2aa0bad")
    eventually(lambda: "Save the assignment" in text())
    js("document.querySelector('#profile').value = 'sales'")
    type_("#dparams", "reg.1.address=2002@pbx.example.com")
    type_("#admin-password", "N3w-Pw!")
    click("#assignment button")
    check("the assignment form assigns the device: profile, its own line, audited",
          eventually(lambda: "assigned" in text() and "assign by console" in text()
                     and "2002@pbx.example.com" in text()))
    shot("device-assigned")
    type_("#dparams", "\nnot a parameter")
    click("#assignment button")
    check("an assignment with a line that is not NAME=VALUE is refused", eventually(lambda: "Not saved" in text()))
    go(admin + "/console/devices/0004f2aa0bad")
    eventually(lambda: "Save the assignment" in text())
    session = call("GET", S + "/cookie/polyprov_session")["value"]
    no_csrf = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-b", f"polyprov_session={session}",
        "-d", "reason=x&confirm=yes", admin + "/console/devices/0004f2aa0bad/release"], capture_output=True, text=True).stdout
    check("a change without the CSRF token is refused (403)", no_csrf == "403")
    csrf = js("return document.querySelector('input[name=csrf]').value")
    click("header button[type=submit]")
    check("sign-out goes back to the sign-in page", eventually(lambda: here().endswith("/console/signin")))
    after = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-b", f"polyprov_session={session}",
        "-d", f"csrf={csrf}&reason=x&confirm=yes", admin + "/console/devices/0004f2aa0bad/release"], capture_output=True, text=True).stdout
    check("the signed-out session is refused, even with its CSRF token (403)", after == "403")
    go(admin + "/console/devices")
    check("and the fleet page asks to sign in again", eventually(lambda: here().endswith("/console/signin")))
    a11y("sign-in")
    check("every form control of every page visited has a label; each page has its language and one h1: "
          + json.dumps({k: v for k, v in unlabelled.items() if v}), all(not v for v in unlabelled.values()))
finally:
    call("DELETE", S)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
