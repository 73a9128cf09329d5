"""Make the demo's bundled example inputs from material free to redistribute:

- ``mmfer/examples/astronaut.jpg``: NASA portrait of Eileen Collins (public domain, via scikit-image);
- ``mmfer/examples/talking.mp4``: that photo slowly panned and zoomed (3 s, 10 fps, 320x240) with a
  synthetic voiced sound (a gliding harmonic tone) as its audio track;
- ``mmfer/examples/voice.wav``: the same kind of synthetic voice, 3 s at 16 kHz.

Synthetic sound is not speech: the audio branch's answer on it only shows the plumbing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "mmfer" / "examples"


def synthetic_voice(seconds: float, sr: int, f0: tuple[float, float] = (160.0, 260.0)) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    inst = np.interp(t, [0, seconds / 2, seconds], [f0[0], f0[1], f0[0]]) + 8 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(inst) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 7))
    env = np.clip(np.minimum(t, seconds - t) / 0.1, 0, 1) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return (0.3 * env * x / np.abs(x).max()).astype(np.float32)


def main() -> None:
    import av
    import soundfile as sf

    photo = cv2.imread(str(OUT / "astronaut.jpg"))
    frames = []
    for i in range(30):
        z = 1.0 + 0.15 * i / 29
        h, w = photo.shape[:2]
        ch, cw = int(h / z), int(w / z)
        y0, x0 = (h - ch) // 3, (w - cw) // 2 + int(10 * np.sin(i / 5))
        frames.append(cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (320, 240), interpolation=cv2.INTER_AREA))
    sr = 16000
    voice = synthetic_voice(3.0, sr)
    with av.open(str(OUT / "talking.mp4"), "w") as c:
        vs = c.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        vs.bit_rate = 300_000
        st = c.add_stream("aac", rate=sr)
        st.layout = "mono"
        for img in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for i in range(0, len(voice), 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(voice[None, i : i + 1024]), format="fltp",
                                            layout="mono")
            fr.sample_rate = sr
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    sf.write(OUT / "voice.wav", synthetic_voice(3.0, sr, (200.0, 320.0)), sr, subtype="PCM_16")
    for f in ("talking.mp4", "voice.wav"):
        print(OUT / f, (OUT / f).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
