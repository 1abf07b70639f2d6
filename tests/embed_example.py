"""A small example dataset made from real content available offline, for the embed tests.

* images: scikit-learn's bundled 8×8 digit scans, upscaled to 40×32 PNGs;
* video: a 3 s, 10 fps MP4 (PyAV) of digit frames, with an AAC audio track when the
  encoder is available (a 440 Hz tone);
* speech: the captions spoken by Debian's ``espeak-ng`` (22.05 kHz WAV, so the 16 kHz
  resampler runs); a synthetic chirp stands in when espeak-ng is missing;
* depth: a rendered scene (a tilted floor plane and a sphere, metres) as ``.npy`` and
  as a 16-bit millimetre PNG.

``manifest.csv`` rows: 5 train, 3 test instances with all four modalities.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess

import numpy as np

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def have_espeak() -> bool:
  return shutil.which("espeak-ng") is not None


def digit_image(k: int, index: int = 0) -> np.ndarray:
  from sklearn.datasets import load_digits
  d = load_digits()
  imgs = d.images[d.target == k]
  g = (imgs[index % len(imgs)] / 16.0 * 255).astype(np.uint8)
  g = np.kron(g, np.ones((4, 5), np.uint8))  # 32 x 40
  return np.stack([g, 255 - g, g // 2], axis=-1)


def write_png(path: str, rgb: np.ndarray) -> None:
  from PIL import Image
  Image.fromarray(rgb).save(path)


def write_video(path: str, digits, fps: int = 10, seconds: float = 3.0, audio: bool = True) -> bool:
  """Writes an MP4; returns whether an audio track was written."""
  import av
  from fractions import Fraction
  n = int(fps * seconds)
  with av.open(path, "w") as c:
    vs = c.add_stream("mpeg4", rate=fps)
    vs.width, vs.height, vs.pix_fmt = 80, 64, "yuv420p"
    as_ = None
    if audio:
      try:
        as_ = c.add_stream("aac", rate=16000)
        as_.layout = "mono"
      except Exception:  # noqa: BLE001
        as_ = None
    for i in range(n):
      img = digit_image(digits[i * len(digits) // n], i)
      img = np.kron(img, np.ones((2, 2, 1), np.uint8))  # 64 x 80
      fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
      for p in vs.encode(fr):
        c.mux(p)
    for p in vs.encode():
      c.mux(p)
    if as_ is not None:
      sr, total = 16000, int(16000 * seconds)
      t = np.arange(total) / sr
      wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
      fs = as_.codec_context.frame_size or 1024
      for s in range(0, total, fs):
        chunk = wave[s:s + fs]
        if len(chunk) < fs:
          chunk = np.pad(chunk, (0, fs - len(chunk)))
        af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        af.sample_rate = sr
        af.pts = s
        af.time_base = Fraction(1, sr)
        for p in as_.encode(af):
          c.mux(p)
      for p in as_.encode():
        c.mux(p)
  return as_ is not None


def write_speech(path: str, text: str) -> str:
  """espeak-ng speech (22.05 kHz) or, without espeak-ng, a chirp at 22.05 kHz."""
  if have_espeak():
    subprocess.run(["espeak-ng", "-s", "220", "-w", path, text], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  else:
    import soundfile as sf
    sr = 22050
    t = np.arange(int(sr * 1.5)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), sr)
  return path


def render_depth(h: int = 48, w: int = 64, shift: float = 0.0) -> np.ndarray:
  """Metres: a floor plane receding from 1 m to 6 m with a sphere in front."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  depth = 1.0 + 5.0 * (1.0 - yy / (h - 1)) + 0.01 * xx + shift
  cy, cx, r = h * 0.6, w * 0.5, h * 0.25
  d2 = (yy - cy) ** 2 + (xx - cx) ** 2
  inside = d2 < r * r
  depth[inside] = 1.5 - np.sqrt(r * r - d2[inside]) / r * 0.4
  return depth


def write_depth_png(path: str, depth_m: np.ndarray) -> None:
  from PIL import Image
  Image.fromarray(np.round(depth_m * 1000).astype(np.uint16)).save(path)


def make_example(root: str) -> str:
  """Writes the example dataset under ``root``; returns the manifest path."""
  os.makedirs(root, exist_ok=True)
  rows = []
  spec = [("train", 3), ("train", 1), ("train", 4), ("train", 1), ("train", 5),
          ("test", 7), ("test", 3), ("test", 9)]
  for i, (split, k) in enumerate(spec):
    iid = f"ex{i:02d}"
    caption = f"the digit {NAMES[k]}"
    if i in (1, 6):
      vision = f"{iid}.mp4"
      write_video(os.path.join(root, vision), [k, (k + 1) % 10, k])
    else:
      vision = f"{iid}.png"
      write_png(os.path.join(root, vision), digit_image(k, i))
    audio = write_speech(os.path.join(root, f"{iid}.wav"), caption)
    if i % 2:
      depth = f"{iid}_depth.png"
      write_depth_png(os.path.join(root, depth), render_depth(shift=0.1 * i))
    else:
      depth = f"{iid}_depth.npy"
      np.save(os.path.join(root, depth), render_depth(shift=0.1 * i))
    rows.append(dict(id=iid, split=split, vision=vision, audio=os.path.basename(audio),
                     text=caption, depth=depth, label=NAMES[k]))
  path = os.path.join(root, "manifest.csv")
  with open(path, "w", newline="", encoding="utf-8") as f:
    wr = csv.DictWriter(f, fieldnames=["id", "split", "vision", "audio", "text", "depth", "label"])
    wr.writeheader()
    wr.writerows(rows)
  with open(os.path.join(root, "class_names.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(NAMES) + "\n")
  return path
