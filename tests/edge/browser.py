"""The operator's browser, for the dashboard's acceptance test: Debian's
chromium driven by selenium (chromium-driver), run as a script inside the
clients' namespace (``python -m tests.edge.browser URL TOKEN OUT SOURCE
SCANNER``),
where the dashboard is off loopback: it must log in.

It prints one JSON object a line, flushed, for the test to follow:
``{"step": "ready"}`` once the dashboard is open (the test then starts the
attack), then ``{"step": "banned", ...}`` when SOURCE's ban row appears
without a reload (or ``{"step": "timeout"}`` after ``BAN_WAIT`` seconds),
and SCANNER among the top sources,
then ``{"step": "story"}`` on the source's story page, where it waits for
a line on its stdin (the test stops the attack) before it unbans, then
``{"step": "done", ...}``: the story's evidence, the unban, the
controls without a label, the console's errors, the screenshots. Every
wait is bounded; the browser is always closed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

BAN_WAIT = 60.0  # seconds for the ban to appear: generous, the figure is printed
WAIT = 20.0  # any other page change
WIDE = (1280, 720)
PHONE = (390, 844)  # a phone's width, in CSS pixels


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


def browser(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a network namespace
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def viewport(driver: WebDriver, size: tuple[int, int]) -> None:
    """The page's viewport (not the window's) at ``size``."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size[0] < 600},
    )


def errors(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def unlabelled(driver: WebDriver) -> list[str]:
    """The page's controls that a screen reader could not name."""
    found: list[str] = driver.execute_script(
        """
        const bad = [];
        for (const c of document.querySelectorAll("button, input, select, textarea, a[href]")) {
          if (c.type === "hidden") continue;
          const named = (c.labels && c.labels.length) || c.getAttribute("aria-label")
            || (c.textContent || "").trim();
          if (!named) bad.push(c.outerHTML.slice(0, 120));
        }
        return bad;
        """
    )
    return found


def tab_to(driver: WebDriver, css: str, presses: int = 400) -> bool:
    """Whether the keyboard alone (Tab) reaches the element ``css`` names."""
    target = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(presses):
        if driver.switch_to.active_element == target:
            return True
        driver.switch_to.active_element.send_keys(Keys.TAB)
    return False


def main(url: str, token: str, out: Path, source: str, scanner: str) -> None:
    driver = browser(out / "profile")
    shots = out / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(driver, WAIT)
    try:
        viewport(driver, WIDE)  # the page's own size, whatever the window's frame takes
        driver.get(url + "/")
        wait.until(lambda d: d.current_url.endswith("/login"))  # off loopback: log in first
        driver.save_screenshot(str(shots / "login.png"))
        field = driver.find_element(By.ID, "token")
        field.send_keys(token, Keys.ENTER)  # the keyboard alone
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#account button"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sources tbody tr"))
        driver.execute_script("window.sipwardenNoReload = true")
        say(step="ready")

        row = f'#bans tr[data-ip="{source}"]'
        try:
            WebDriverWait(driver, BAN_WAIT, poll_frequency=0.05).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, row)
            )
        except TimeoutException:
            say(step="timeout", errors=errors(driver))
            return
        seen = time.time()
        shown_at = float(driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-shown-at"))
        reloaded = not driver.execute_script("return window.sipwardenNoReload === true")
        # the PBX's health: svcrack's guesses got Kamailio's 401s (within 2 s: the counters' refresh)
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "pbx-last").text.startswith("the last")
        )
        pbx = driver.find_element(By.ID, "pbx-answers").text
        say(step="banned", shown_at=shown_at, seen=seen, reloaded=reloaded, pbx=pbx)

        # the scanner among the top sources (the panels refresh every 15 s)
        WebDriverWait(driver, 40).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'#sources tr[data-ip="{scanner}"]')
        )
        console = errors(driver)
        driver.save_screenshot(str(shots / "dashboard-1280x720.png"))
        viewport(driver, PHONE)
        time.sleep(0.5)
        driver.save_screenshot(str(shots / "dashboard-phone.png"))
        viewport(driver, WIDE)
        labels = unlabelled(driver)
        reachable = tab_to(driver, f'{row} button[data-action="unban"]')

        driver.find_element(By.CSS_SELECTOR, f'{row} a[href^="/source/"]').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ban ul.evidence li"))
        evidence = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#ban ul.evidence li")]
        deceived = driver.find_element(By.CSS_SELECTOR, "#deceived tbody").text
        driver.save_screenshot(str(shots / "story-1280x720.png"))
        labels += unlabelled(driver)
        console += errors(driver)
        say(step="story")
        sys.stdin.readline()  # the test stopped the attackers: an unban now is not undone
        unban = driver.find_element(By.CSS_SELECTOR, '#actions button[data-action="unban"]')
        unban.send_keys(Keys.ENTER)  # the keyboard again
        wait.until(lambda d: d.find_element(By.ID, "summary").text.startswith("Not banned"))
        unbanned_at = time.time()
        viewport(driver, PHONE)
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "story-phone.png"))
        console += errors(driver)
        say(
            step="done",
            evidence=evidence,
            deceived=deceived,
            unbanned_at=unbanned_at,
            unlabelled=labels,
            tab_reaches_unban=reachable,
            console_errors=console,
            screenshots=str(shots),
        )
    except Exception:
        # what the test's log needs to tell why: where it was, what it saw
        driver.save_screenshot(str(shots / "failure.png"))
        print(f"at {driver.current_url}; console: {driver.get_log('browser')}", file=sys.stderr)
        print(driver.find_element(By.TAG_NAME, "body").text[:2000], file=sys.stderr)
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5])
