"""Video input, face tracks and the face emotion timeline (part of the video branch), on generated
videos made from a real face photo and on the shared CK+ clips; bad videos of every kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, YUNET_640, face_frames, needs_yunet, set_display_rotation, write_video
from mmfer.cli.main import main
from mmfer.face.predictor import FaceEmotionRecognizer
from mmfer.video.io import VideoLoadError, VideoReader
from mmfer.video.timeline import video_timeline
from mmfer.video.tracking import Track, box_iou, link_tracks, main_track

CK_CLIP = SHARED_DATA / "ckplus_videos" / "anger_S111_006.mp4"
needs_ck = pytest.mark.skipif(not CK_CLIP.is_file(), reason=f"CK+ clips not found at {CK_CLIP.parent}")


@pytest.fixture(scope="module")
def rec() -> FaceEmotionRecognizer:
    # YuNet: the Haar cascade misses this compressed, moving face in most frames
    return FaceEmotionRecognizer(detector="yunet", yunet_model=str(YUNET_640))


def test_iou_and_tracking_rules() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0

    class F:
        def __init__(self, box: tuple[int, int, int, int]):
            self.box = box

    a = [F((10 + 2 * t, 10, 50, 50)) for t in range(10)]
    b = [F((300, 200 + t, 20, 20)) for t in range(10)]
    dets = [[a[t], b[t]] if t not in (4, 5) else [b[t]] for t in range(10)]  # a is missed for two frames
    tracks = link_tracks(dets, max_gap=3)
    assert len(tracks) == 2 and sorted(t.length for t in tracks) == [8, 10]
    assert main_track(tracks).length == 10  # longest wins...
    tie = [Track(0, {0: F((0, 0, 10, 10))}), Track(1, {0: F((50, 50, 30, 30))})]
    assert main_track(tie).id == 1  # ...and the larger face breaks a tie
    assert len(link_tracks(dets, max_gap=1)) == 3  # a gap longer than max_gap starts a new track
    assert main_track([]) is None


def test_sampling_and_info(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, face_frames(30), fps=30)
    r = VideoReader(path, sample_fps=10)
    frames = list(r)
    assert (r.info.width, r.info.height, r.info.fps, r.info.has_audio) == (640, 480, 30.0, False)
    assert r.info.duration_s == pytest.approx(1.0, abs=0.05)
    assert [round(f.time_s, 3) for f in frames] == pytest.approx([i / 10 for i in range(10)], abs=0.02)
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    assert len(list(VideoReader(path, sample_fps=None))) == 30


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_rotated_phone_video_is_shown_upright(tmp_path: Path, clockwise: int) -> None:
    upright = [np.ascontiguousarray(f[:, 80:560]) for f in face_frames(3)]  # 480x480 would hide 90 vs 270
    upright = [np.ascontiguousarray(np.vstack([f, f[:160]])) for f in upright]  # portrait 480 wide, 640 high
    path = tmp_path / f"phone_{clockwise}.mp4"
    # The camera stores the scene turned the other way; the display matrix turns it back.
    write_video(path, [np.ascontiguousarray(np.rot90(f, k=clockwise // 90)) for f in upright])
    set_display_rotation(path, clockwise)
    r = VideoReader(path, sample_fps=None)
    frames = list(r)
    assert r.info.rotation == clockwise and len(frames) == 3
    assert (r.info.width, r.info.height) == (480, 640)  # the upright size, as a player shows it
    shown = frames[1].image.astype(float)
    assert shown.shape == upright[1].shape == (640, 480, 3)
    err = np.abs(shown - upright[1]).mean()
    wrong = np.abs(shown - np.rot90(upright[1], 2)).mean()  # upside down is a distinct, wrong answer
    assert err < 6 and wrong > 3 * err, (err, wrong)


def test_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    pts = [0, 20, 40, 150, 160, 170, 180, 400, 410, 600, 610, 620, 800, 990]  # bursts and gaps (ms)
    path = tmp_path / "vfr.mp4"
    write_video(path, face_frames(len(pts)), fps=30, pts_ms=pts)
    times = [f.time_s for f in VideoReader(path, sample_fps=5)]  # one frame per 200 ms
    assert times == pytest.approx([0.0, 0.4, 0.6, 0.8], abs=0.01)


def test_huge_and_single_frame_videos(tmp_path: Path) -> None:
    path = tmp_path / "huge.mp4"
    write_video(path, [np.full((2160, 3840, 3), 120, np.uint8)])
    frames = list(VideoReader(path))
    assert len(frames) == 1 and max(frames[0].image.shape[:2]) == 1280


@needs_yunet
def test_timeline_marks_frames_without_a_face(tmp_path: Path, rec: FaceEmotionRecognizer) -> None:
    path = tmp_path / "talk.mp4"
    write_video(path, face_frames(12, blank={5, 6}))
    tl = video_timeline(path, rec, sample_fps=10)
    assert len(tl.times) == 12 and tl.faces_per_frame[5] == 0
    assert list(np.flatnonzero(~tl.face_found)) == [5, 6]
    assert len(tl.tracks) == 1 and tl.tracks[0].length == 10  # one person, across the gap
    found = tl.face_found
    assert np.allclose(tl.probs[found].sum(1), 1, atol=1e-4) and np.isnan(tl.smoothed[~found]).all()
    assert tl.to_dict()["emotion"] == "happy"  # the astronaut smiles
    assert any("10 of 12" in n for n in tl.notes)


@needs_yunet
def test_two_people_main_track_is_the_larger(tmp_path: Path, rec: FaceEmotionRecognizer) -> None:
    path = tmp_path / "two.mp4"
    write_video(path, face_frames(6, two=True))
    tl = video_timeline(path, rec)
    assert len(tl.tracks) == 2
    main = next(t for t in tl.tracks if t.id == tl.main_track_id)
    assert main.mean_area == max(t.mean_area for t in tl.tracks)


@needs_yunet
def test_cli_timeline_writes_json_csv_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "talk.mp4"
    write_video(path, face_frames(10))
    assert main(["timeline", str(path), "--yunet-model", str(YUNET_640), "--out", str(tmp_path / "tl"),
                 "--fps", "5"]) == 0
    out = capsys.readouterr().out
    assert "5 frames used" in out and "main face, clip mean -> happy" in out
    doc = json.loads((tmp_path / "tl" / "timeline.json").read_text())
    assert doc["frames_used"] == 5 and doc["video"]["fps"] == 10.0 and len(doc["frames"]) == 5
    csv = (tmp_path / "tl" / "timeline.csv").read_text().splitlines()
    assert csv[0].startswith("time_s,faces,face_found,angry") and len(csv) == 6
    assert (tmp_path / "tl" / "timeline.png").stat().st_size > 5000


def test_bad_videos_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import av

    (tmp_path / "text.mp4").write_text("not a video\n" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with av.open(str(tmp_path / "voice.m4a"), "w") as c:  # an audio-only container
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    good = tmp_path / "good.mp4"
    write_video(good, face_frames(20))
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    cases = {"text.mp4": "not a readable video", "empty.mp4": "empty file", "voice.m4a": "has no video track",
             "missing.mp4": "no such file"}
    for name, problem in cases.items():
        with pytest.raises(VideoLoadError, match=rf"{name}: {problem}"):
            list(VideoReader(tmp_path / name))
    try:  # a cut MP4 either fails cleanly or yields the frames before the cut, with a note
        frames = list(reader := VideoReader(tmp_path / "cut.mp4"))
        assert len(frames) < 20 or reader.notes
    except VideoLoadError as exc:
        assert str(exc).startswith(str(tmp_path / "cut.mp4"))
    assert main(["timeline", str(tmp_path / "text.mp4"), "--detector", "haar"]) == 1
    assert "text.mp4: not a readable video" in capsys.readouterr().err


@needs_ck
@needs_yunet
def test_ck_clip_onset_to_apex(rec: FaceEmotionRecognizer) -> None:
    r = VideoReader(CK_CLIP, sample_fps=5)
    frames = list(r)
    assert (r.info.width, r.info.height, r.info.fps) == (640, 490, 10.0)
    assert len(frames) == 10 and frames[-1].time_s == pytest.approx(1.8)
    tl = video_timeline(CK_CLIP, rec)
    assert tl.face_found.all() and len(tl.tracks) == 1
    neutral = 6
    assert tl.probs[0, neutral] > tl.probs[-1, neutral]  # the expression builds up from a neutral face


def _faststart(src: Path, dst: Path) -> bytes:
    """The same video with its index (moov) before the media data, as streaming sites and phones write it."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst.read_bytes()


def test_damage_that_does_not_stop_decoding_is_reported(tmp_path: Path) -> None:
    write_video(tmp_path / "src.mp4", face_frames(30), fps=10)
    data = _faststart(tmp_path / "src.mp4", tmp_path / "fast.mp4")
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    reader = VideoReader(tmp_path / "cut.mp4")
    frames = list(reader)
    assert 0 < len(frames) < 30
    assert any(n.startswith("truncated: the header promises 3.00 s, the frames end at") for n in reader.notes)
    rng = np.random.default_rng(0)
    flipped = bytearray(data)
    for k in rng.integers(4000, len(flipped), 200):
        flipped[k] ^= 0x5A
    (tmp_path / "flipped.mp4").write_bytes(bytes(flipped))
    reader = VideoReader(tmp_path / "flipped.mp4")
    assert len(list(reader)) > 0
    assert any(n.startswith("corrupt: ") for n in reader.notes), reader.notes
    clean = VideoReader(tmp_path / "fast.mp4")
    assert len(list(clean)) == 30 and clean.notes == []  # the intact file: no false alarm


def test_unplayable_mp4_says_why(tmp_path: Path) -> None:
    write_video(tmp_path / "src.mp4", face_frames(5), fps=10)
    data = (tmp_path / "src.mp4").read_bytes()
    i = data.find(b"moov")
    (tmp_path / "renamed.mp4").write_bytes(data[:i] + b"xxxx" + data[i + 4 :])
    (tmp_path / "unfinished.mp4").write_bytes(data[: len(data) // 2])  # the index is written last
    for name, extra in (("renamed.mp4", ""), ("unfinished.mp4", "; the file also ends inside its 'mdat' box")):
        with pytest.raises(VideoLoadError, match=rf"{name}: unplayable MP4/MOV: its index \(the 'moov' box\) is "
                                                 rf"missing.*{extra}"):
            VideoReader(tmp_path / name)


def test_frames_too_large_are_refused_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmfer.video.io as video_io

    write_video(tmp_path / "v.mp4", face_frames(3), fps=10)  # 640x480
    monkeypatch.setattr(video_io, "MAX_PIXELS", 640 * 480 - 1)
    with pytest.raises(VideoLoadError, match=r"v\.mp4: video frames are 640x480 \(0 MP\), larger than"):
        VideoReader(tmp_path / "v.mp4")


def test_timeline_takes_many_videos_and_goes_on_past_bad_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mmfer.cli.main import _timeline_dirs

    (tmp_path / "a").mkdir()
    write_video(tmp_path / "a" / "clip.mp4", face_frames(6), fps=10)
    write_video(tmp_path / "clip.mp4", face_frames(6), fps=10)
    (tmp_path / "broken.mp4").write_text("not a video\n" * 20)
    videos = [tmp_path / "a" / "clip.mp4", tmp_path / "broken.mp4", tmp_path / "clip.mp4"]
    dirs = _timeline_dirs(videos, str(tmp_path / "out"))
    assert [d.name for d in dirs] == ["a_clip_timeline", "broken_timeline", f"{tmp_path.name}_clip_timeline"]
    code = main(["timeline", *map(str, videos), "--out", str(tmp_path / "out"), "--detector", "haar"])
    out, err = capsys.readouterr()
    assert code == 1 and "broken.mp4: not a readable video" in err
    assert (dirs[0] / "timeline.json").is_file() and (dirs[2] / "timeline.json").is_file()
    assert not dirs[1].exists()
