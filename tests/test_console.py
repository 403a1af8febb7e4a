"""The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium) against a real stack: Redis, the API under gunicorn with keys, a worker
serving `shapes` and `games` (a tensor model), and the batch feeder. One browser and one stack
for the module. Every test reads the browser's console log: an entry at SEVERE level fails it,
wrong keys and tenant keys included (they are checked without a refused request).

The run writes docs/console-try.png and docs/console-models.png (shown in README.md)."""
import base64
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.test_api import png_bytes

ROOT = Path(__file__).resolve().parent.parent
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_KEY = "console-admin-0123456789abcdef"
USER_KEY = "console-user-0123456789abcdef"
WAIT_S = 30
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(models=["shapes", "games"], feeder=True,
                                api_keys=f"{USER_KEY}=alpha", admin_keys=f"{ADMIN_KEY}=ops")


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMEDRIVER, os.X_OK) and os.access("/usr/bin/chromium", os.X_OK)):
        pytest.fail("chromium and chromium-driver are not installed: run scripts/install.sh")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class Console:
    """The browser on one stack's console, with what each test needs."""

    def __init__(self, driver, base):
        self.driver, self.base = driver, base

    def wait(self, condition, what: str, timeout_s: float = WAIT_S):
        return WebDriverWait(self.driver, timeout_s).until(
            lambda d: condition(d), message=f"waiting for {what}")

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def shown(self, css, timeout_s: float = WAIT_S):
        def visible(d):
            found = d.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else None
        return self.wait(visible, f"{css} to show", timeout_s)

    def text(self, css, pattern, timeout_s: float = WAIT_S):
        """The text of the first `css` element, once it matches `pattern`."""
        def matches(d):
            found = d.find_elements(By.CSS_SELECTOR, css)
            return found and re.search(pattern, found[0].text) and found[0].text
        return self.wait(matches, f"{css} to read {pattern!r}", timeout_s)

    def sign_out(self):
        self.driver.get(self.base + "/console")
        self.driver.execute_script("sessionStorage.clear()")

    def sign_in(self, key: str = ADMIN_KEY):
        """From the server's address, with the keyboard only: the key field has the focus."""
        self.sign_out()
        self.driver.get(self.base + "/")
        self.shown("#sign-in")
        field = self.wait(lambda d: d.switch_to.active_element.get_attribute("id") == "key"
                          and d.switch_to.active_element, "the key field to have the focus")
        field.send_keys(key, Keys.ENTER)

    def go(self, page: str):
        self.driver.get(f"{self.base}/console#/{page}")

    def severe(self) -> list[str]:
        entries = self.driver.get_log("browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"]


@pytest.fixture
def console(browser, stack):
    browser.set_window_size(*DESKTOP)
    page = Console(browser, stack.base)
    page.driver.get_log("browser")  # what earlier tests left
    yield page
    assert page.severe() == [], "the browser console logged errors"


def submit_job(stack, key=ADMIN_KEY) -> dict:
    files = [("image", ("circle.png", (ROOT / "examples" / "circle.png").read_bytes(),
                        "image/png"))]
    resp = requests.post(f"{stack.base}/v1/models/shapes/jobs", files=files, timeout=40,
                         headers={"Authorization": f"Bearer {key}", "Prefer": "wait=30"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_console_page_is_served_under_a_strict_policy(stack):
    resp = requests.get(stack.base + "/", allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "console"
    page = requests.get(stack.base + "/console", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # Nothing from elsewhere: no URL with a host in the page or in any file it loads.
    assets = re.findall(r'(?:src|href)="(console/assets/[^"]+)"', page.text)
    assert assets
    for name in os.listdir(ROOT / "console"):
        body = requests.get(f"{stack.base}/console/assets/{name}", timeout=10)
        expected = 404 if name == "index.html" else 200
        assert body.status_code == expected, name
        assert not re.search(r"https?://", body.text), name
    # Only the console's own files: no other type, no path out of console/.
    for name in ("app.py", "..%2Fapi%2Fapp.py", "%2Fetc%2Fpasswd"):
        resp = requests.get(f"{stack.base}/console/assets/{name}", timeout=10)
        assert resp.status_code in (401, 404) and "import" not in resp.text, name
    example = requests.get(stack.base + "/console/examples/circle.png", timeout=10)
    assert example.status_code == 200 and example.content == \
        (ROOT / "examples" / "circle.png").read_bytes()


def test_sign_in_and_try_an_example_image(console):
    console.sign_in()
    console.shown("#nav")
    assert console.driver.current_url.endswith("/console#/try")
    # The key is in this tab's session storage, and in no URL.
    assert console.driver.execute_script("return sessionStorage.getItem('inferq.key')") == \
        ADMIN_KEY
    Select(console.shown("#try-model")).select_by_value("shapes@1")
    console.find("#try-file").send_keys(str(ROOT / "examples" / "circle.png"))
    console.shown("#try-preview")
    console.find("#try-run").click()
    assert console.text(".bars li:first-child .label", r"\w") == "circle"
    score = float(console.find(".bars li:first-child .score").text)
    assert 0.5 < score <= 1.0
    for field in ("#try-queue", "#try-predict", "#try-total"):
        assert re.fullmatch(r"\d+\.\d ms", console.find(field).text), field
    assert re.fullmatch(r"\d+", console.find("#try-batch").text)
    curl = console.find("#try-curl").get_attribute("value")
    assert "-F image=@circle.png" in curl and "Prefer: wait=30" in curl
    assert curl.endswith(f"{console.base}/v1/models/shapes/versions/1/jobs")
    assert "$INFERQ_API_KEY" in curl and ADMIN_KEY not in curl
    console.driver.save_screenshot(str(ROOT / "docs" / "console-try.png"))


def test_an_example_button_fills_the_image(console):
    console.sign_in()
    console.shown("#nav")
    console.wait(lambda d: d.find_elements(By.XPATH, "//button[text()='square.png']"),
                 "the examples")[0].click()
    assert console.text("#try-file-name", r"square\.png")
    console.find("#try-run").click()
    assert console.text(".bars li:first-child .label", r"\w") == "square"


def test_a_tensor_model_gets_a_json_box_from_its_signature(console):
    console.sign_in()
    console.shown("#nav")
    Select(console.shown("#try-model")).select_by_value("games@1")
    box = console.shown("#try-tensor")
    assert not console.find("#try-drop").is_displayed()
    assert json.loads(box.get_attribute("value")) == {"instances": [[0] * 10]}
    box.clear()
    box.send_keys(json.dumps({"instances": [[1, 0, 1, 0, 1, 0, 1, 0, 1, 0]]}))
    console.find("#try-run").click()
    assert console.text("#try-result pre.json", r"\d")
    assert re.fullmatch(r"\d+\.\d ms", console.find("#try-predict").text)
    curl = console.find("#try-curl").get_attribute("value")
    assert "-H 'Content-Type: application/json' -d '{\"instances\"" in curl
    assert curl.endswith("/v1/models/games/versions/1/jobs")


def test_a_wrong_key_is_refused_with_a_message(console):
    # Checked through GET /v1, which answers 200: the browser logs no failed request.
    console.sign_in("not-a-key-0123456789abcdef")
    error = console.text("#sign-in-error", r"refused")
    assert "That key was refused: the API key is not valid" in error
    assert console.find("#nav").is_displayed() is False
    assert console.driver.execute_script("return sessionStorage.getItem('inferq.key')") is None
    # The right key then works from the same form.
    field = console.find("#key")
    field.send_keys(ADMIN_KEY, Keys.ENTER)
    console.shown("#nav")
    assert not console.find("#sign-in-error").is_displayed()


def test_the_models_page_shows_the_live_worker(console, stack):
    submit_job(stack)  # some figures for the last minute
    console.sign_in()
    console.shown("#nav")
    link = console.find("nav a[href='#/models']")
    link.send_keys(Keys.ENTER)  # the keyboard reaches every page
    row = "#models tr[data-model='shapes'][data-version='1']"
    assert console.text(f"{row} .state", "available")
    assert console.text(f"{row} td.workers", r"^1$")
    cells = [c.text for c in console.driver.find_elements(By.CSS_SELECTOR, f"{row} td")]
    jobs_per_s, p50 = float(cells[4]), cells[5]
    assert jobs_per_s > 0 and re.fullmatch(r"\d+\.\d ms", p50), cells
    assert "last 60 s" in console.find("#models-window").text
    console.driver.save_screenshot(str(ROOT / "docs" / "console-models.png"))


def test_a_job_sent_by_another_client_appears_on_the_jobs_page(console, stack):
    console.sign_in()
    console.shown("#nav")
    console.go("jobs")
    console.shown("#jobs")
    job = submit_job(stack)  # while the page is open: it refreshes by itself
    row = f"#jobs tr[data-job='{job['id']}']"
    assert console.text(f"{row} .status", "succeeded")
    console.find(f"{row} a").click()
    assert console.text("#job-outputs", '"circle"')
    assert job["id"] in console.find("#page h1").text
    assert "No webhook for this job." in console.find("#job").text


def test_another_tenant_sees_none_of_these_jobs(console, stack):
    console.sign_in(USER_KEY)
    console.shown("#nav")
    console.go("jobs")
    assert console.text("#jobs", "No jobs yet")


def test_the_batches_page_follows_a_batch_to_its_end(console, stack):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
            data = png_bytes(color=color)
            info = tarfile.TarInfo(f"img-{i}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    resp = requests.post(f"{stack.base}/v1/models/shapes/batches", timeout=30,
                         files={"input": ("in.tar", out.getvalue(), "application/x-tar")},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert resp.status_code == 202, resp.text
    batch = resp.json()["id"]
    console.sign_in()
    console.shown("#nav")
    console.go("batches")
    row = f"#batches tr[data-batch='{batch}']"
    assert console.text(f"{row} .status", "completed")
    assert "3 done, 0 failed of 3" in console.find(row).text
    bar = console.find(f"{row} progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "3"
    # An ended batch offers its files, and no cancel.
    buttons = [b.text for b in console.driver.find_elements(By.CSS_SELECTOR, f"{row} button")]
    assert buttons == ["Results", "Errors"]


def test_a_running_batch_can_be_cancelled_from_its_row(console, stack):
    # shapes-sm is in the repository but no worker serves it: its batch waits until cancelled.
    resp = requests.post(f"{stack.base}/v1/models/shapes-sm/batches", timeout=30,
                         data=b'{"custom_id": "a", "b64": "%s"}\n' % base64.b64encode(
                             png_bytes()),
                         headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                  "Content-Type": "application/jsonl"})
    assert resp.status_code == 202, resp.text
    batch = resp.json()["id"]
    console.sign_in()
    console.shown("#nav")
    console.go("batches")
    row = f"#batches tr[data-batch='{batch}']"
    console.wait(lambda d: d.find_elements(By.XPATH, f"//tr[@data-batch='{batch}']"
                                           "//button[text()='Cancel']"), "a Cancel button")
    console.driver.find_element(
        By.XPATH, f"//tr[@data-batch='{batch}']//button[text()='Cancel']").click()
    assert console.text(f"{row} .status", "^cancell")
    status = requests.get(f"{stack.base}/v1/batches/{batch}", timeout=10,
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["status"]
    assert status in ("cancelling", "cancelled")


def test_workers_are_shown_to_an_admin_only(console, stack):
    console.sign_in()
    console.shown("#nav")
    console.go("workers")
    row = "#workers tr[data-worker]"
    assert console.text(row, "shapes v1")
    assert re.search(r"\d+\.\d s ago", console.find(row).text)
    assert console.find('#nav a[href="#/workers"]').is_displayed()
    console.sign_in(USER_KEY)
    console.shown("#nav")
    # A tenant's key has no Workers tab; the page, opened by its address, asks nothing.
    assert not console.find('#nav a[href="#/workers"]').is_displayed()
    console.go("workers")
    assert console.text("#workers", "needs an admin key")


def test_the_console_fits_a_390_px_wide_screen(console, stack):
    submit_job(stack)  # a row on the Jobs page, run alone or not
    console.driver.set_window_size(390, 844)
    console.sign_in()
    console.shown("#nav")
    # The window is that narrow, not clamped to a browser's minimum.
    assert console.driver.execute_script("return window.innerWidth") <= 390

    def fits(d):
        return d.execute_script("return document.documentElement.scrollWidth <= "
                                "window.innerWidth")

    # Wide tables scroll sideways inside their own box; the page itself never does.
    for page, ready in (("try", "#try-drop"), ("models", "#models .scroll"),
                        ("jobs", "#jobs .scroll"), ("batches", "#batches > *")):
        console.go(page)
        element = console.shown(ready)
        assert console.wait(fits, f"the {page} page to fit 390 px"), page
        assert element.rect["x"] + element.rect["width"] <= 390, page
    for link in console.driver.find_elements(By.CSS_SELECTOR, "nav a"):
        assert link.is_displayed() and link.rect["x"] + link.rect["width"] <= 390, link.text
