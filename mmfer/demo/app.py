"""The Gradio demo: photo, video, audio and webcam tabs over one :class:`~mmfer.pipeline.EmotionPipeline`.

Everything runs locally with the shipped weights; branches that cannot load (e.g. no CLIP
weights offline) are listed at the top instead of failing. Every handler turns a bad upload
into a message in the page: the app stays up. Binds to 127.0.0.1 unless told otherwise,
limits upload size and video length, and queues work.

Several requests run at once (``launch(concurrency_limit=...)``), so nothing a request does is kept
on shared objects: each browser session's model choice lives in its own ``gr.State`` (the handlers
get that session's pipeline as an argument), and figures use matplotlib's object API, not pyplot.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from mmfer.demo import figures
from mmfer.paths import PACKAGE_DIR

log = logging.getLogger(__name__)
EXAMPLES_DIR = PACKAGE_DIR / "examples"


class SafeImage(gr.Image):
    """An Image input that hands unreadable uploads to mmfer's own loader (which names the problem)
    instead of failing inside PIL before the handler runs."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - any decoder failure: let mmfer.io.images explain it
            return str(payload.path) if payload is not None and getattr(payload, "path", None) else None


def _expected_errors() -> tuple[type[Exception], ...]:
    from mmfer.audio.io import AudioLoadError
    from mmfer.core.errors import ModelLoadError
    from mmfer.fusion.late_fusion import FusionError
    from mmfer.io.images import ImageLoadError
    from mmfer.video.io import VideoLoadError

    return (ImageLoadError, AudioLoadError, VideoLoadError, ModelLoadError, FusionError, ValueError)


def _problem(path: Any, exc: Exception) -> str:
    msg = str(exc)
    if path and str(path) in msg:  # show the name the user uploaded, not gradio's temp folder
        msg = msg.replace(str(path), Path(str(path)).name)
    return f"**Could not analyse this upload.** {msg}"


def _label(probs: dict[str, float] | None) -> dict[str, float] | None:
    return None if not probs else {k: float(v) for k, v in probs.items()}


def _summary(doc: dict[str, Any]) -> str:
    lines = []
    if doc.get("fused"):
        f = doc["fused"]
        lines.append(f"**Fused: {f['emotion']}** ({f['probabilities'][f['emotion']]:.0%}) from "
                     + ", ".join(f"{m} ({doc['branches'][m]['emotion']})" for m in f["modalities"]))
        lines.append("- fusion weights: " + ", ".join(f"{m} {w:.2f}" for m, w in f.get("weights", {}).items())
                     + f" ({f.get('rule', 'default')})")
        for m, why in f.get("notes", {}).items():
            lines.append(f"- {m}: {why}")
    else:
        lines.append("**No prediction**: no branch could read this input.")
    for m, why in doc.get("skipped", {}).items():
        lines.append(f"- {m}: skipped ({why})")
    for n in doc.get("notes", []):
        lines.append(f"- note: {n}")
    t = doc.get("timings_ms", {})
    if t:
        lines.append("- time: " + ", ".join(f"{k} {v:.0f} ms" for k, v in t.items()))
    return "\n".join(lines)


def status_markdown(status: dict[str, dict[str, Any]]) -> str:
    rows = ["| branch | model | backend | status |", "|---|---|---|---|"]
    for name, s in status.items():
        state = "loaded" if s["available"] else f"unavailable: {s['reason']}"
        rows.append(f"| {name} | {s.get('model') or '-'} | {s.get('backend') or '-'} | {state} |")
    notes = status.get("fusion", {}).get("notes") or []
    return "\n".join(rows + [""] + [f"- {n}" for n in notes])


class DemoHandlers:
    """The functions behind the tabs (plain Python, so they are testable without a browser).

    ``self.pipe`` is the pipeline every session starts with. In the app, a session that loads other
    models keeps them in its own state and passes them as ``pipe`` (see :meth:`session_models`); the
    shared ``self.pipe`` changes only through :meth:`switch_models`, for single-user Python callers.
    """

    def __init__(self, pipeline: Any):
        self.pipe = pipeline

    def _load_models(self, pipe: Any, face_model: str | None, audio_model: str | None) -> tuple[Any, str, str]:
        """(pipeline to use from now on, status table, message): ``pipe`` itself when loading fails."""
        try:
            new = pipe.with_models((face_model or "").strip() or None, (audio_model or "").strip() or None)
        except _expected_errors() as exc:
            return pipe, status_markdown(pipe.status()), f"**Models not changed.** {exc}"
        except Exception as exc:  # noqa: BLE001 - the page must stay up whatever happens
            log.exception("model switch failed")
            return pipe, status_markdown(pipe.status()), f"**Models not changed.** ({type(exc).__name__}): {exc}"
        status = new.status()
        audio = status["audio"]
        msg = "Models loaded." + ("" if audio["available"] else f" Audio branch unavailable: {audio['reason']}")
        return new, status_markdown(status), msg

    def switch_models(self, face_model: str | None, audio_model: str | None) -> tuple[str, str]:
        """Load other face / audio models (mmfer names or folders, transformers hub ids or folders) for
        every later call on this object. On failure the current models stay and the message says why."""
        self.pipe, table, msg = self._load_models(self.pipe, face_model, audio_model)
        return table, msg

    def session_models(self, face_model: str | None, audio_model: str | None, pipe: Any = None
                       ) -> tuple[str, str, Any]:
        """:meth:`switch_models` for one browser session: returns the session's new pipeline (its state),
        leaving the shared one, and so every other user's models, alone."""
        new, table, msg = self._load_models(self.pipe if pipe is None else pipe, face_model, audio_model)
        return table, msg, new

    def image(self, path: str | None, pipe: Any = None) -> tuple:
        """``pipe``: the session's pipeline (default: the shared one), as for every handler."""
        pipe = self.pipe if pipe is None else pipe
        if not path:
            return None, None, None, None, "Upload a photo (or take one with the webcam) first.", None
        try:
            from mmfer.io.images import load_image

            img = load_image(path)
            a = pipe.analyze_image(img, Path(path).name)
        except _expected_errors() as exc:
            return None, None, None, None, _problem(path, exc), None
        except Exception as exc:  # noqa: BLE001 - the page must stay up whatever happens
            log.exception("image analysis failed")
            return None, None, None, None, f"**Internal error** ({type(exc).__name__}): {exc}", None
        doc = a.to_dict()
        boxes = [f["box"] for f in a.faces]
        labels = [f"{i + 1}: {f['fused']['emotion']}" for i, f in enumerate(a.faces)]
        annotated = figures.draw_faces(img, boxes, labels, [f["fused"]["emotion"] for f in a.faces])
        bars = figures.face_bars(a.faces) if a.faces else None
        contrib = figures.contribution_chart(doc["fused"]) if doc["fused"] else None
        fused = _label(doc["fused"]["probabilities"]) if doc["fused"] else None
        return annotated, fused, bars, contrib, _summary(doc), doc

    def video(self, path: str | None, pipe: Any = None) -> tuple:
        pipe = self.pipe if pipe is None else pipe
        if not path:
            return None, None, None, None, "Upload a video first.", None
        try:
            a = pipe.analyze_video(path)
        except _expected_errors() as exc:
            return None, None, None, None, _problem(path, exc), None
        except Exception as exc:  # noqa: BLE001
            log.exception("video analysis failed")
            return None, None, None, None, f"**Internal error** ({type(exc).__name__}): {exc}", None
        from mmfer.video.timeline import plot_timeline

        doc = a.to_dict()
        tl = a.timeline  # None when the frames could not be decoded but the audio track could
        gallery = [(figures.draw_faces(k.image, k.boxes, ["face"] * len(k.boxes), [None] * len(k.boxes)),
                    f"{k.time_s:.1f} s") for k in tl.key_frames] if tl is not None else None
        plot = plot_timeline(tl, Path(tempfile.mkdtemp(prefix="mmfer-demo-")) / "timeline.png") \
            if tl is not None else None
        contrib = figures.contribution_chart(doc["fused"]) if doc["fused"] else None
        fused = _label(doc["fused"]["probabilities"]) if doc["fused"] else None
        doc.pop("audio", None)
        return gallery, None if plot is None else str(plot), fused, contrib, _summary(doc), doc

    def audio(self, path: str | None, pipe: Any = None) -> tuple:
        pipe = self.pipe if pipe is None else pipe
        if not path:
            return None, None, "Upload or record a clip first.", None
        from mmfer.audio.io import AudioTooLong, load_audio

        limit = pipe.max_video_s
        try:
            clip = load_audio(path, max_seconds=limit) if limit else load_audio(path)
            a = pipe.analyze_audio(path)
        except AudioTooLong:
            return None, None, (f"**Could not analyse this upload.** {Path(path).name}: too long for this demo, "
                                f"which accepts clips up to {limit or 600:.0f} s (the mmfer command line has no "
                                "length limit)"), None
        except _expected_errors() as exc:
            return None, None, _problem(path, exc), None
        except Exception as exc:  # noqa: BLE001
            log.exception("audio analysis failed")
            return None, None, f"**Internal error** ({type(exc).__name__}): {exc}", None
        doc = a.to_dict()
        probs = _label(a.audio.probabilities) if a.audio is not None and a.audio.emotion else None
        fig = figures.pitch_energy(clip.samples, f"{Path(path).name}: pitch and energy")
        return probs, fig, _summary(doc), doc

    def webcam(self, frame: np.ndarray | None, pipe: Any = None) -> tuple:
        """Live: faces only (no scene), boxes and the largest face's emotion."""
        if frame is None:
            return None, None
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        faces = (self.pipe if pipe is None else pipe).face.predict_image(bgr)
        annotated = figures.draw_faces(bgr, [f.box for f in faces], [f.emotion for f in faces],
                                       [f.emotion for f in faces])
        main = max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None
        return annotated, _label(main.probabilities) if main else None


def _examples(kind: str) -> list[str]:
    suffixes = {"image": (".jpg", ".png"), "video": (".mp4",), "audio": (".wav", ".flac")}[kind]
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in suffixes)


def build_demo(pipeline: Any) -> gr.Blocks:
    h = DemoHandlers(pipeline)
    status = pipeline.status()
    with gr.Blocks(title="mmfer: multimodal emotion recognition") as demo:
        session = gr.State(None)  # this session's pipeline once it loads other models; None: the shared one
        gr.Markdown("# mmfer: multimodal emotion recognition\n"
                    "Face, temporal (video), speech and scene branches fused by late fusion; the contribution "
                    "chart shows each modality's exact additive share of the fused score.")
        with gr.Accordion("Models", open=False):
            model_status = gr.Markdown(status_markdown(status), elem_id="model-status")
            with gr.Row():
                face_choice = gr.Textbox(label="face model", value=pipeline.opts.get("face_model") or "",
                                         placeholder="face_lite0, a model folder, or a transformers image "
                                                     "classifier (hub id or folder)", elem_id="face-model")
                audio_choice = gr.Textbox(label="audio model", value=pipeline.opts.get("audio_model") or "",
                                          placeholder="audio_crnn, a model folder, or a transformers audio "
                                                      "classifier (hub id or folder)", elem_id="audio-model")
            load_btn = gr.Button("Load models", elem_id="load-models")
            model_msg = gr.Markdown(elem_id="model-message")
            load_btn.click(h.session_models, [face_choice, audio_choice, session], [model_status, model_msg, session],
                           api_name="load_models")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column():
                    img_in = SafeImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                       label="photo", elem_id="image-input")
                    img_btn = gr.Button("Analyze photo", variant="primary", elem_id="image-button")
                    if _examples("image"):
                        gr.Examples(_examples("image"), inputs=img_in)
                img_out = gr.Image(label="faces", elem_id="image-output")
            img_msg = gr.Markdown(elem_id="image-result")
            with gr.Row():
                img_fused = gr.Label(num_top_classes=7, label="fused (main face + scene)")
                img_bars = gr.Plot(label="every face")
            img_contrib = gr.Plot(label="per-modality contributions")
            img_json = gr.JSON(label="full result", open=False)
            img_btn.click(h.image, [img_in, session], [img_out, img_fused, img_bars, img_contrib, img_msg, img_json],
                          api_name="analyze_image")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    vid_in = gr.Video(label="video", sources=["upload"], elem_id="video-input")
                    vid_btn = gr.Button("Analyze video", variant="primary", elem_id="video-button")
                    if _examples("video"):
                        gr.Examples(_examples("video"), inputs=vid_in)
                vid_gallery = gr.Gallery(label="key frames", columns=3, height=260)
            vid_msg = gr.Markdown(elem_id="video-result")
            vid_plot = gr.Image(label="emotion over time (face)", type="filepath")
            with gr.Row():
                vid_fused = gr.Label(num_top_classes=7, label="fused clip result")
                vid_contrib = gr.Plot(label="per-modality contributions")
            vid_json = gr.JSON(label="full result", open=False)
            vid_btn.click(h.video, [vid_in, session],
                          [vid_gallery, vid_plot, vid_fused, vid_contrib, vid_msg, vid_json], api_name="analyze_video")
        with gr.Tab("Audio"):
            with gr.Row():
                with gr.Column():
                    aud_in = gr.Audio(type="filepath", format=None, sources=["upload", "microphone"],
                                      label="speech", elem_id="audio-input")
                    aud_btn = gr.Button("Analyze audio", variant="primary", elem_id="audio-button")
                    if _examples("audio"):
                        gr.Examples(_examples("audio"), inputs=aud_in)
                aud_label = gr.Label(num_top_classes=8, label="speech emotion (calm included)")
            aud_msg = gr.Markdown(elem_id="audio-result")
            aud_plot = gr.Plot(label="pitch and energy")
            aud_json = gr.JSON(label="full result", open=False)
            aud_btn.click(h.audio, [aud_in, session], [aud_label, aud_plot, aud_msg, aud_json],
                          api_name="analyze_audio")
        with gr.Tab("Webcam"):
            gr.Markdown("Live face emotion from your webcam (faces only, for speed).")
            with gr.Row():
                cam_in = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam")
                cam_out = gr.Image(label="faces")
            cam_label = gr.Label(num_top_classes=3, label="largest face")
            cam_in.stream(h.webcam, [cam_in, session], [cam_out, cam_label], stream_every=0.3, concurrency_limit=1,
                          api_name="webcam_frame")
    return demo


def launch(pipeline: Any, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 50.0,
           prevent_thread_lock: bool = False, quiet: bool = False, concurrency_limit: int = 2) -> gr.Blocks:
    """Build, queue and serve the demo (``prevent_thread_lock`` returns at once: tests, notebooks).

    ``concurrency_limit``: requests of one kind (photo, video, audio...) analysed at the same time;
    more wait in the queue (at most 32).
    """
    if concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be at least 1, got {concurrency_limit}")
    import matplotlib

    # Headless, chosen once before serving: gradio switches to Agg around every request, which is then a
    # no-op instead of a pyplot backend switch (pyplot is not thread-safe). The demo's figures never use pyplot.
    matplotlib.use("Agg")
    demo = build_demo(pipeline)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=32)
    demo.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb",
                prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True,
                allowed_paths=[str(EXAMPLES_DIR)])
    return demo
