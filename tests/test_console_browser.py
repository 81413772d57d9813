"""The review console in a real browser: Debian's headless Chromium driven by Selenium through
the system chromedriver (offline), against ``loan-decision serve`` on loopback. Two reviewers
finish a four-eyes case; the bank's API then shows the final outcome.

``CONSOLE_SCREENSHOTS=docs`` also writes the README's screenshots of the queue and a case."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.factories import CLIENT, application

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("*** Chromium or chromedriver is missing (Debian: chromium chromium-driver; `make tools` installs "
                "them): the console's browser test is SKIPPED ***", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

KEY_A = "dev-reviewer-a-key-change-me"
KEY_B = "dev-reviewer-b-key-change-me"


@pytest.fixture
def server(tmp_path: Path):
    live = LiveServer(tmp_path / "data").start()
    yield live
    live.stop()


@pytest.fixture
def browser():
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1366,1000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})  # the bank's reviewers
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def sign_in(driver, url: str, key: str) -> None:
    driver.get(url + "/console/")
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "key")))
    assert driver.current_url.endswith("/console/login")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "reviewer")))


def click(driver, element_id: str) -> None:
    """Press a form's button and wait for the next page (post/redirect/get) to say it is done."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 10).until(ec.staleness_of(page))
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "done")))


def shoot(driver, name: str) -> None:
    """The whole page, as a PNG in $CONSOLE_SCREENSHOTS (the README's pictures)."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1366, min(height + 20, 4000))
        driver.save_screenshot(str(Path(folder) / name))
        driver.set_window_size(1366, 1000)


def test_two_reviewers_finish_a_four_eyes_case_in_the_browser(server, browser):
    with httpx.Client(base_url=server.url, timeout=10) as api:
        now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
        for i, (amount, minutes_ago) in enumerate(((40000, 7), (8000, 3), (15000, 1))):
            body = application(f"browser-{i}", loan={"amount": amount, "term_months": 12, "purpose": "consumption"},
                               submitted_at=(now - dt.timedelta(minutes=minutes_ago)).isoformat())
            decided = api.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT).json()
            assert decided["outcome"] == "refer"
            if i == 0:
                first = decided
        sign_in(browser, server.url, KEY_A)
        rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
        assert len(rows) == 3
        assert all(":" in row.find_element(By.CSS_SELECTOR, ".countdown").text for row in rows)  # time left
        stored = "return Object.keys(localStorage).length + Object.keys(sessionStorage).length"
        assert not browser.execute_script(stored)  # nothing in the browser's storage
        assert KEY_A not in browser.current_url and KEY_A not in browser.page_source
        shoot(browser, "console-queue.png")

        case_id = api.get("/v1/reviews", headers={"Authorization": f"Bearer {KEY_A}"}).json()
        case_id = next(c["case_id"] for c in case_id["cases"] if c["decision_id"] == first["decision_id"])
        browser.find_element(By.CSS_SELECTOR, f'tr[data-case="{case_id}"] a.case-link').click()
        WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "case-id")))
        assert browser.find_element(By.ID, "state").get_attribute("data-state") == "open"
        assert browser.find_element(By.ID, "state").text == "待领取"  # the browser asks for Chinese
        assert "VERIFICATION_UNAVAILABLE" in browser.find_element(By.ID, "reasons").text
        assert "核验服务暂时不可用" in browser.find_element(By.ID, "reasons").text  # the browser asks for Chinese
        assert browser.find_elements(By.CSS_SELECTOR, "#factors tbody tr")  # the top factors
        assert application()["applicant"]["id_number"] not in browser.page_source
        click(browser, "claim")
        assert browser.find_element(By.ID, "holder").text.startswith("dev-reviewer-a")
        browser.find_element(By.ID, "outcome-approve").click()
        Select(browser.find_element(By.ID, "reason-approve")).select_by_value("VERIFIED_BY_CALL")
        amount = browser.find_element(By.ID, "amount")
        amount.clear()
        amount.send_keys("40000")
        Select(browser.find_element(By.ID, "term")).select_by_value("12")
        Select(browser.find_element(By.ID, "tier")).select_by_value("T2")
        browser.find_element(By.ID, "note").send_keys("Called the customer on 13800138000: confirmed.")
        shoot(browser, "console-case.png")
        assert len(browser.window_handles) == 1
        click(browser, "decide")
        assert browser.find_element(By.ID, "state").get_attribute("data-state") == "awaiting_confirmation"
        assert browser.find_element(By.ID, "waiting")  # the proposer cannot confirm it
        browser.find_element(By.ID, "sign-out").click()

        sign_in(browser, server.url, KEY_B)
        browser.get(f"{server.url}/console/cases/{case_id}")
        click(browser, "claim")
        proposal = browser.find_element(By.ID, "proposal")
        assert proposal.get_attribute("data-proposer") == "dev-reviewer-a"
        assert float(proposal.get_attribute("data-amount")) == 40000
        click(browser, "confirm")
        assert browser.find_element(By.ID, "state").get_attribute("data-state") == "decided"
        history = browser.find_element(By.ID, "history").text
        assert "proposed" in history and "confirmed" in history and "138****8000" in history

        browser.find_element(By.ID, "find-link").click()
        browser.find_element(By.ID, "find").send_keys("browser-0")
        browser.find_element(By.ID, "find-button").click()
        WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "outcome")))
        outcome = browser.find_element(By.ID, "outcome")
        assert (outcome.get_attribute("data-outcome"), outcome.get_attribute("data-by")) == ("approve", "person")

        final = api.get(f"/v1/decisions/{first['decision_id']}", headers=CLIENT).json()
        assert final["outcome"] == "approve" and final["offer"]["amount"] == 40000
        assert final["automatic"]["outcome"] == "refer"
        assert final["review"]["decided_by"] == "dev-reviewer-a" and final["review"]["confirmed_by"] == "dev-reviewer-b"
