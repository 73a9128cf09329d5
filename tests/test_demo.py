"""The Gradio demo: its handlers on good and bad uploads, the running app through gradio_client
(with several clients at once), and a real headless Chromium driving the page."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from conftest import EXAMPLE_PHOTO, YUNET_640

pytest.importorskip("gradio")

EXAMPLES = EXAMPLE_PHOTO.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pipeline():  # noqa: ANN201 - EmotionPipeline
    from mmfer.pipeline import EmotionPipeline

    detector = dict(detector="yunet", yunet_model=str(YUNET_640)) if YUNET_640.is_file() else {}
    return EmotionPipeline(max_video_s=20.0, **detector)


@pytest.fixture(scope="module")
def app_url(pipeline):  # noqa: ANN001, ANN201 - the running demo's URL
    from mmfer.demo.app import launch

    port = _free_port()
    demo = launch(pipeline, port=port, max_upload_mb=5, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_handlers_on_good_and_bad_uploads(pipeline, tmp_path: Path) -> None:  # noqa: ANN001
    from mmfer.demo.app import DemoHandlers

    h = DemoHandlers(pipeline)
    annotated, fused, bars, contrib, msg, doc = h.image(str(EXAMPLE_PHOTO))
    assert annotated.shape[2] == 3 and fused and max(fused, key=fused.get) == doc["emotion"]
    assert msg.startswith(f"**Fused: {doc['emotion']}**") and "scene: skipped" in msg
    assert bars is not None and contrib is not None
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not a picture")
    out = h.image(str(bad))
    assert out[0] is None and "holiday.jpg" in out[4] and "Could not analyse" in out[4]
    assert "Upload a photo" in h.image(None)[4]
    out = h.video(str(bad))  # an image-named text file in the video tab
    assert out[0] is None and "holiday.jpg" in out[4]
    out = h.audio(str(EXAMPLE_PHOTO))  # a photo in the audio tab
    assert out[0] is None and "astronaut.jpg" in out[2]
    import cv2

    frame = cv2.cvtColor(cv2.imread(str(EXAMPLE_PHOTO)), cv2.COLOR_BGR2RGB)  # what the webcam stream sends
    shown, live = h.webcam(frame)
    assert shown.shape == frame.shape and max(live, key=live.get) == doc["faces"][0]["emotion"]
    assert h.webcam(None) == (None, None)
    label, fig, msg, doc = h.audio(str(EXAMPLES / "voice.wav"))
    assert set(label) == {*doc["audio"]["probabilities"]} and fig is not None and "audio" in doc["branches"]


def test_video_tab_on_the_bundled_example(pipeline) -> None:  # noqa: ANN001
    from mmfer.demo.app import DemoHandlers

    gallery, plot, fused, contrib, msg, doc = DemoHandlers(pipeline).video(str(EXAMPLES / "talking.mp4"))
    assert len(gallery) == 3 and Path(plot).stat().st_size > 5000
    assert {"face", "audio"} <= set(doc["branches"]) and set(doc["fused"]["modalities"]) == set(doc["branches"])
    assert msg.startswith("**Fused:") and contrib is not None


def test_gradio_client_and_concurrent_users(app_url: str, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    flipped = tmp_path / "mirror.png"
    import cv2

    cv2.imwrite(str(flipped), cv2.imread(str(EXAMPLE_PHOTO))[:, ::-1])
    jobs = [("/analyze_image", EXAMPLE_PHOTO), ("/analyze_image", bad), ("/analyze_audio", EXAMPLES / "voice.wav"),
            ("/analyze_image", flipped), ("/analyze_image", EXAMPLE_PHOTO), ("/analyze_audio", bad)]

    def run(job: tuple[str, Path]) -> tuple:
        return Client(app_url, verbose=False).predict(handle_file(str(job[1])), api_name=job[0])

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs, timeout=300))
    image_ok, image_bad, audio_ok, mirror_ok, image_again, audio_bad = results
    assert image_ok[4].startswith("**Fused:")
    assert image_again[5]["fused"] == image_ok[5]["fused"] and image_again[5]["file"] == "astronaut.jpg"
    assert mirror_ok[4].startswith("**Fused:")
    assert "broken.png" in image_bad[4] and "Could not analyse" in image_bad[4]
    assert "broken.png" in audio_bad[2]
    assert audio_ok[3]["kind"] == "audio" and audio_ok[3]["branches"]["audio"]["emotion"]


def _browser():  # noqa: ANN202 - selenium webdriver
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium chromium-driver; "
                    "scripts/setup.sh --test does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2200"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def test_browser_uploads_a_photo_and_reads_the_result(app_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image-input input[type=file]")))
        assert "mmfer" in driver.title
        driver.find_element(By.CSS_SELECTOR, "#image-input input[type=file]").send_keys(str(EXAMPLE_PHOTO))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image-input img")))
        driver.find_element(By.ID, "image-button").click()
        wait.until(lambda d: "Fused:" in d.find_element(By.ID, "image-result").text)
        text = driver.find_element(By.ID, "image-result").text
        assert "face" in text and "scene: skipped" in text
        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("MMFER_DEMO_SCREENSHOT"):  # scripts/demo_screenshot.sh: the README's picture
            shutil.copy(shot, os.environ["MMFER_DEMO_SCREENSHOT"])
        # A bad upload is answered in the page, and the page stays usable.
        bad = tmp_path / "notes.png"
        bad.write_text("just text")
        driver.refresh()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image-input input[type=file]")))
        driver.find_element(By.CSS_SELECTOR, "#image-input input[type=file]").send_keys(str(bad))
        driver.find_element(By.ID, "image-button").click()
        wait.until(lambda d: "notes.png" in d.find_element(By.ID, "image-result").text)
        assert "Could not analyse" in driver.find_element(By.ID, "image-result").text
    finally:
        driver.quit()


def test_hostile_uploads_get_a_message_and_the_server_stays_up(app_url: str, tmp_path: Path) -> None:
    """Every generated image, audio and video input (tests/fuzz_inputs.py) uploaded to its tab, four users at
    a time: each gets a message in the page (an error naming the file, or a result), never an internal error,
    and good uploads are still answered afterwards. Files over the demo's upload limit are refused by gradio
    itself before they reach the server."""
    from concurrent.futures import ThreadPoolExecutor

    from fuzz_inputs import generate
    from gradio_client import Client, handle_file

    limit = 5 * 2**20  # the fixture's max_upload_mb
    cases = [c for c in generate(tmp_path / "fuzz") if c.kind != "config" and c.path.stat().st_size <= limit]
    tab = {"image": ("/analyze_image", 4), "audio": ("/analyze_audio", 2), "video": ("/analyze_video", 4)}
    audio_only = {"audio_only.m4a", "wav_as.mp4"}  # no frames: the video tab refuses them by name
    too_long = {"long_44k_stereo.wav"}  # 25 s: over the fixture's 20 s limit
    other_kind = {"wav_as.jpg", "mp4_as.png", "jpg_as.wav"}  # (the CLI reads them by content) not the tab's kind

    def upload(case):  # noqa: ANN001, ANN202
        api, slot = tab[case.kind]
        out = Client(app_url, verbose=False).predict(handle_file(str(case.path)), api_name=api)
        return case, out[slot]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(upload, cases, timeout=900))
    wrong = []
    for case, msg in answers:
        refused = msg.startswith("**Could not analyse this upload.**")
        expect = "error" if case.path.name in audio_only | too_long | other_kind else case.expect
        if "Internal error" in msg or not (refused or msg.startswith(("**Fused:", "**No prediction**"))):
            wrong.append(f"{case.path.name}: {msg[:200]!r}")
        elif refused and (expect == "ok" or case.path.name not in msg):
            wrong.append(f"{case.path.name} ({case.what}): refused: {msg[:200]!r}")
        elif not refused and expect == "error":
            wrong.append(f"{case.path.name} ({case.what}): expected a refusal, got {msg[:120]!r}")
    assert not wrong, "\n".join(wrong)
    assert len(answers) >= 200
    client = Client(app_url, verbose=False)
    assert client.predict(handle_file(str(EXAMPLE_PHOTO)), api_name="/analyze_image")[4].startswith("**Fused:")
    assert client.predict(handle_file(str(EXAMPLES / "voice.wav")), api_name="/analyze_audio")[2].startswith("**Fused:")
