"""ImageBind's input preprocessing, re-implemented in torch (no torchvision/torchaudio).

ImageBind's own ``imagebind/data.py`` does not import here (it needs torchaudio,
torchvision and pytorchvideo), so this module reproduces its transforms with torch,
PIL, PyAV and soundfile. Each function states the ImageBind behaviour it follows.

* **image** — shorter side to 224 (PIL bicubic, as ``torchvision.transforms.Resize``
  does on PIL images), centre crop 224, ``[0, 1]``, CLIP mean/std.  → ``[3, 224, 224]``
* **video** — ImageBind's ``load_and_transform_video_data``: ``clips`` (5) clips of
  ``clip_duration`` (2) s spaced uniformly (pytorchvideo's
  ``ConstantClipsPerVideoSampler``), frame indices as decord's ``get_clip``,
  ``frames_per_clip`` (2) frames per clip by uniform temporal subsampling, short
  side to 224 (bilinear), CLIP mean/std, 3 spatial crops (left/centre/right).
  → ``[clips * 3, 3, frames_per_clip, 224, 224]``
* **audio** — ``load_and_transform_audio_data``: first channel (kaldi's
  ``channel=-1`` → 0), resampled to 16 kHz (torchaudio's Hann-windowed sinc,
  width 6, roll-off 0.99), 3 clips × 2 s, 128-bin kaldi filterbank (25 ms Hann
  window, 10 ms shift, pre-emphasis 0.97, no dither), padded/cut to 204 frames,
  normalised with mean −4.268 and std 9.138.  → ``[3, 1, 128, 204]``
* **text** — ImageBind's BPE tokenizer (vocabulary shipped in the package), 77 tokens.
* **depth** — ImageBind/Omnivore's disparity normalisation **[R]** (ImageBind ships
  no depth loader; this follows Omnivore's published transforms): depth in metres →
  disparity ``baseline·focal / clip(depth, 0.01, 50)`` (NYU Kinect v1: focal
  518.857901 px, baseline 0.075 m) → ``DepthNorm``: clamp to ``[0.01, 75]`` and
  divide by 75 → short side to 224 (bilinear, antialiased), centre crop → normalise
  with mean 0.0418 and std 0.0295.  → ``[1, 224, 224]``

Media decoding: images with PIL; wav/flac/ogg with soundfile; video frames and the
audio track of video containers with PyAV. Nothing shells out to ffmpeg.
"""

from __future__ import annotations

import functools
import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

AUDIO_SAMPLE_RATE = 16000
AUDIO_NUM_MEL_BINS = 128
AUDIO_TARGET_LEN = 204
AUDIO_CLIP_DURATION = 2
AUDIO_CLIPS = 3
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138

VIDEO_CLIP_DURATION = 2
VIDEO_CLIPS = 5
VIDEO_FRAMES_PER_CLIP = 2  # ImageBind subsamples ``clip_duration`` frames per clip
VIDEO_SPATIAL_CROPS = 3

NYU_FOCAL = 518.857901
NYU_BASELINE = 0.075
DEPTH_MIN = 0.01
DEPTH_MAX = 50.0
DISPARITY_MAX = 75.0
DEPTH_MEAN = 0.0418
DEPTH_STD = 0.0295

CONTEXT_LENGTH = 77
F32_EPS = float(torch.finfo(torch.float32).eps)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SOUNDFILE_EXTS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


class MediaError(ValueError):
  """A media file is missing, unreadable or unusable; the message names it."""


def _media_err(path: str, kind: str, reason: str) -> MediaError:
  return MediaError(f"{path}: {kind}: expected a readable {kind} file, found {reason}")


# ---------------------------------------------------------------------------- image


def _resize_short_side_pil(img, size: int, resample):
  w, h = img.size
  short, long = (w, h) if w <= h else (h, w)
  new_short, new_long = size, int(size * long / short)
  new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
  if (new_w, new_h) == (w, h):
    return img
  return img.resize((new_w, new_h), resample)


def _center_crop_offsets(h: int, w: int, size: int) -> tuple[int, int]:
  return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def image_transform(img) -> torch.Tensor:
  """ImageBind's vision transform of a PIL image → float32 ``[3, 224, 224]``."""
  from PIL import Image
  img = _resize_short_side_pil(img.convert("RGB"), IMAGE_SIZE, Image.BICUBIC)
  a = np.asarray(img, dtype=np.float32) / 255.0  # [H, W, 3]
  top, left = _center_crop_offsets(a.shape[0], a.shape[1], IMAGE_SIZE)
  a = a[top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
  x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
  mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
  std = torch.tensor(CLIP_STD).view(3, 1, 1)
  return (x - mean) / std


def load_image(path: str) -> torch.Tensor:
  """Reads an image file and applies :func:`image_transform`."""
  from PIL import Image, UnidentifiedImageError
  if not os.path.isfile(path):
    raise _media_err(path, "image", "no file")
  try:
    with open(path, "rb") as f:
      img = Image.open(f)
      img.load()
  except (UnidentifiedImageError, OSError) as e:
    raise _media_err(path, "image", f"undecodable data ({e})") from e
  return image_transform(img)


# ------------------------------------------------------------------ clip sampling


def clip_timepoints(duration: float, clip_duration: float, clips: int
                    ) -> list[tuple[Fraction, Fraction]]:
  """pytorchvideo's ``ConstantClipsPerVideoSampler`` read out over a whole file:
  ``clips`` windows of ``clip_duration`` seconds with uniformly spaced starts in
  ``[0, max(duration − clip_duration, 0)]`` (exact fractions, as pytorchvideo)."""
  max_start = Fraction(max(duration - clip_duration, 0))
  step = max_start / max(clips - 1, 1)
  cd = Fraction(clip_duration)
  return [(step * k, step * k + cd) for k in range(clips)]


# ---------------------------------------------------------------------------- audio


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int,
             lowpass_filter_width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
  """Band-limited sinc resampling with a Hann window (torchaudio's default method).

  Args:
    waveform: float ``[..., T]``.
    orig_freq, new_freq: integer sample rates.

  Returns:
    ``[..., ceil(T * new_freq / orig_freq)]``.
  """
  orig_freq, new_freq = int(orig_freq), int(new_freq)
  if orig_freq == new_freq:
    return waveform
  g = math.gcd(orig_freq, new_freq)
  up_in, up_out = orig_freq // g, new_freq // g
  base = min(up_in, up_out) * rolloff
  width = math.ceil(lowpass_filter_width * up_in / base)
  dtype = waveform.dtype
  # t[j, k]: distance (in input-rate units) between output phase j and input tap k.
  taps = torch.arange(-width, width + up_in, dtype=torch.float64) / up_in
  phases = -torch.arange(up_out, dtype=torch.float64)[:, None] / up_out
  t = ((phases + taps[None, :]) * base).clamp(-lowpass_filter_width, lowpass_filter_width)
  window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
  arg = t * math.pi
  sinc = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / torch.where(arg == 0, 1.0, arg))
  kernel = (sinc * window * (base / up_in)).to(dtype)[:, None, :]  # [up_out, 1, K]
  shape = waveform.shape
  x = waveform.reshape(-1, shape[-1])
  n = x.shape[-1]
  x = F.pad(x, (width, width + up_in))
  y = F.conv1d(x[:, None, :], kernel, stride=up_in)  # [B, up_out, L]
  y = y.transpose(1, 2).reshape(x.shape[0], -1)
  target = math.ceil(up_out * n / up_in)
  return y[:, :target].reshape(*shape[:-1], -1)


@functools.lru_cache(maxsize=8)
def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float = 20.0,
                    high_freq: float = 0.0) -> torch.Tensor:
  """Kaldi's triangular mel filterbank (no VTLN) → float32 ``[num_bins, n_fft // 2 + 1]``
  (last column zero, as Kaldi ignores the Nyquist bin)."""
  nyquist = 0.5 * sample_rate
  if high_freq <= 0.0:
    high_freq += nyquist
  mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)  # noqa: E731
  lo, hi = mel(low_freq), mel(high_freq)
  delta = (hi - lo) / (num_bins + 1)
  b = np.arange(num_bins, dtype=np.float64)[:, None]
  left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
  fft_mel = mel(sample_rate / n_fft * np.arange(n_fft // 2, dtype=np.float64))[None, :]
  up = (fft_mel - left) / (center - left)
  down = (right - fft_mel) / (right - center)
  banks = np.maximum(0.0, np.minimum(up, down))
  banks = np.concatenate([banks, np.zeros((num_bins, 1))], axis=1)
  return torch.from_numpy(banks.astype(np.float32))


def kaldi_fbank(wave: torch.Tensor, sample_rate: float = AUDIO_SAMPLE_RATE,
                num_mel_bins: int = AUDIO_NUM_MEL_BINS, frame_length_ms: float = 25.0,
                frame_shift_ms: float = 10.0, preemphasis: float = 0.97,
                low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
  """Kaldi ``compute-fbank-feats`` with ImageBind's options: Hann window (symmetric),
  ``snip_edges``, per-frame DC removal, pre-emphasis, power spectrum, log mel
  energies floored at float32 eps, no dither, no energy column.

  Args:
    wave: float ``[T]`` (one channel).

  Returns:
    float32 ``[num_frames, num_mel_bins]`` with
    ``num_frames = 1 + (T − window) // shift``.
  """
  wave = wave.to(torch.float32)
  win = int(sample_rate * frame_length_ms * 0.001)
  shift = int(sample_rate * frame_shift_ms * 0.001)
  n_fft = 1 << (win - 1).bit_length()
  if wave.ndim != 1 or wave.shape[0] < win:
    raise ValueError(f"kaldi_fbank: expected a 1-D waveform of at least {win} samples, "
                     f"found shape {tuple(wave.shape)}")
  frames = wave.unfold(0, win, shift)  # [m, win]
  frames = frames - frames.mean(dim=1, keepdim=True)
  prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
  frames = frames - preemphasis * prev
  frames = frames * torch.hann_window(win, periodic=False, dtype=torch.float32)
  frames = F.pad(frames, (0, n_fft - win))
  power = torch.fft.rfft(frames).abs().pow(2.0)  # [m, n_fft/2 + 1]
  banks = kaldi_mel_banks(num_mel_bins, n_fft, float(sample_rate), low_freq, high_freq)
  return torch.clamp(power @ banks.T, min=F32_EPS).log()


def waveform_to_melspec(clip: torch.Tensor, sample_rate: int = AUDIO_SAMPLE_RATE,
                        num_mel_bins: int = AUDIO_NUM_MEL_BINS,
                        target_length: int = AUDIO_TARGET_LEN) -> torch.Tensor:
  """ImageBind's ``waveform2melspec`` on ``clip [C, T]`` → ``[1, num_mel_bins, target_length]``.

  Like ImageBind, the mean is subtracted *in place* (so overlapping clips of a short
  file see each other's subtraction — reproduced for fidelity; per-frame DC removal
  makes it immaterial) and only channel 0 is used.
  """
  clip -= clip.mean()
  fb = kaldi_fbank(clip[0], sample_rate, num_mel_bins).transpose(0, 1)  # [bins, frames]
  p = target_length - fb.shape[1]
  fb = F.pad(fb, (0, p)) if p > 0 else fb[:, :target_length]
  return fb.unsqueeze(0)


def audio_transform(waveform: torch.Tensor, sample_rate: int, *,
                    clips: int = AUDIO_CLIPS, clip_duration: float = AUDIO_CLIP_DURATION
                    ) -> torch.Tensor:
  """ImageBind's audio pipeline on a decoded ``[C, T]`` float waveform → ``[clips, 1, 128, 204]``."""
  w = waveform.to(torch.float32).clone()
  if w.ndim == 1:
    w = w[None]
  if sample_rate != AUDIO_SAMPLE_RATE:
    w = resample(w, sample_rate, AUDIO_SAMPLE_RATE)
  sr = AUDIO_SAMPLE_RATE
  out = []
  for start, end in clip_timepoints(w.shape[1] / sr, clip_duration, clips):
    seg = w[:, int(start * sr):int(end * sr)]  # a view: in-place mean removal as ImageBind
    out.append((waveform_to_melspec(seg, sr) - AUDIO_MEAN) / AUDIO_STD)
  return torch.stack(out, dim=0)


def _decode_audio_av(path: str, silence_if_missing: bool) -> tuple[np.ndarray, int]:
  import av
  with av.open(path) as container:
    if not container.streams.audio:
      if silence_if_missing:
        dur = float(container.duration or 0) / 1e6 if container.duration else 0.0
        if dur <= 0 and container.streams.video:
          s = container.streams.video[0]
          dur = float(s.duration * s.time_base) if s.duration else 0.0
        n = max(int(round(dur * AUDIO_SAMPLE_RATE)), AUDIO_SAMPLE_RATE // 10)
        return np.zeros((1, n), np.float32), AUDIO_SAMPLE_RATE
      raise _media_err(path, "audio", "a container without an audio stream")
    stream = container.streams.audio[0]
    sr = stream.codec_context.sample_rate or stream.rate
    conv = av.AudioResampler(format="fltp")
    chunks = []
    for frame in container.decode(stream):
      for f in conv.resample(frame):
        chunks.append(f.to_ndarray())
    for f in conv.resample(None):
      chunks.append(f.to_ndarray())
  if not chunks:
    raise _media_err(path, "audio", "no decodable audio samples")
  return np.concatenate(chunks, axis=1).astype(np.float32), int(sr)


def load_audio_waveform(path: str, *, silence_if_missing: bool = False
                        ) -> tuple[torch.Tensor, int]:
  """Decodes an audio file (soundfile) or a video's audio track (PyAV) → ``([C, T], sr)``
  float32 in ``[-1, 1]``. ``silence_if_missing``: a container without an audio stream
  gives silence of the container's duration instead of an error."""
  if not os.path.isfile(path):
    raise _media_err(path, "audio", "no file")
  try:
    if path.lower().endswith(SOUNDFILE_EXTS):
      import soundfile as sf
      data, sr = sf.read(path, dtype="float32", always_2d=True)  # [T, C]
      a = np.ascontiguousarray(data.T)
    else:
      a, sr = _decode_audio_av(path, silence_if_missing)
  except MediaError:
    raise
  except Exception as e:  # noqa: BLE001 - decoder errors come in many types
    raise _media_err(path, "audio", f"undecodable data ({type(e).__name__}: {e})") from e
  if a.shape[1] == 0:
    raise _media_err(path, "audio", "zero samples")
  return torch.from_numpy(a), int(sr)


def load_audio(path: str, *, silence_if_missing: bool = False) -> torch.Tensor:
  """Reads a file and applies :func:`audio_transform` → ``[3, 1, 128, 204]``."""
  w, sr = load_audio_waveform(path, silence_if_missing=silence_if_missing)
  min_len = int(sr * 0.025) + 1
  if w.shape[1] < min_len:
    raise _media_err(path, "audio", f"{w.shape[1]} samples (< one 25 ms frame)")
  return audio_transform(w, sr)


# ---------------------------------------------------------------------------- video


def short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
  """pytorchvideo's ``ShortSideScale`` (bilinear, no antialias) on ``[C, T, H, W]``."""
  _, _, h, w = x.shape
  if w < h:
    nh, nw = int(math.floor(float(h) / w * size)), size
  else:
    nh, nw = size, int(math.floor(float(w) / h * size))
  return F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)


def uniform_crop(x: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
  """ImageBind's ``uniform_crop`` (0/1/2 = left/centre/right, or top/centre/bottom)."""
  h, w = x.shape[-2:]
  y0 = int(math.ceil((h - size) / 2))
  x0 = int(math.ceil((w - size) / 2))
  if h > w:
    y0 = {0: 0, 1: y0, 2: h - size}[spatial_idx]
  else:
    x0 = {0: 0, 1: x0, 2: w - size}[spatial_idx]
  return x[..., y0:y0 + size, x0:x0 + size]


def video_frame_indices(num_frames: int, fps: float, *, clips: int = VIDEO_CLIPS,
                        clip_duration: float = VIDEO_CLIP_DURATION,
                        frames_per_clip: int = VIDEO_FRAMES_PER_CLIP) -> list[list[int]]:
  """Frame indices per clip: decord's ``get_clip`` window ``[ceil(fps·start),
  min(ceil(fps·end), N))`` then pytorchvideo's ``UniformTemporalSubsample``."""
  duration = num_frames / fps
  out = []
  for start, end in clip_timepoints(duration, clip_duration, clips):
    a = math.ceil(fps * start)
    b = min(math.ceil(fps * end), num_frames)
    t = max(b - a, 1)
    sub = torch.linspace(0, t - 1, frames_per_clip).clamp(0, t - 1).long().tolist()
    out.append([min(a + i, num_frames - 1) for i in sub])
  return out


def _video_meta(path: str) -> tuple[int, float]:
  import av
  with av.open(path) as c:
    if not c.streams.video:
      raise _media_err(path, "video", "a container without a video stream")
    s = c.streams.video[0]
    fps = float(s.average_rate) if s.average_rate else float(s.guessed_rate or 0)
    n = int(s.frames or 0)
    if n <= 0:
      n = sum(1 for _ in c.decode(s))
  if n <= 0 or fps <= 0:
    raise _media_err(path, "video", f"{n} frames at {fps} fps")
  return n, fps


def decode_frames(path: str, indices: Sequence[int]) -> dict[int, np.ndarray]:
  """Decodes only the wanted frames (RGB uint8 ``[H, W, 3]``) in one sequential pass.
  Indices past the last decodable frame (container metadata can overstate the
  frame count) get the last decoded frame."""
  import av
  want = set(int(i) for i in indices)
  top = max(want)
  got: dict[int, np.ndarray] = {}
  last = None
  with av.open(path) as c:
    s = c.streams.video[0]
    s.thread_type = "AUTO"
    for i, frame in enumerate(c.decode(s)):
      last = frame
      if i in want:
        got[i] = frame.to_ndarray(format="rgb24")
      if i >= top:
        break
    if last is None:
      raise _media_err(path, "video", "no decodable frames")
    missing = want - set(got)
    if missing:
      tail = last.to_ndarray(format="rgb24")
      for i in missing:
        got[i] = tail
  return got


def video_transform_frames(clips_frames: Sequence[np.ndarray], *,
                           spatial_crops: int = VIDEO_SPATIAL_CROPS) -> torch.Tensor:
  """Per clip ``[T, H, W, 3]`` uint8 → ``[clips * crops, 3, T, 224, 224]`` (ImageBind order:
  all crops of clip 0, then clip 1, …)."""
  mean = torch.tensor(CLIP_MEAN).view(3, 1, 1, 1)
  std = torch.tensor(CLIP_STD).view(3, 1, 1, 1)
  crops = [0, 1, 2] if spatial_crops == 3 else [1]
  out = []
  for fr in clips_frames:
    x = torch.from_numpy(np.ascontiguousarray(fr)).to(torch.float32).permute(3, 0, 1, 2)  # C,T,H,W
    x = short_side_scale(x / 255.0, IMAGE_SIZE)
    x = (x - mean) / std
    out.extend(uniform_crop(x, IMAGE_SIZE, k) for k in crops)
  return torch.stack(out, dim=0)


def load_video(path: str, *, clips: int = VIDEO_CLIPS, clip_duration: float = VIDEO_CLIP_DURATION,
               frames_per_clip: int = VIDEO_FRAMES_PER_CLIP,
               spatial_crops: int = VIDEO_SPATIAL_CROPS) -> torch.Tensor:
  """ImageBind's video pipeline → ``[clips * spatial_crops, 3, frames_per_clip, 224, 224]``."""
  if not os.path.isfile(path):
    raise _media_err(path, "video", "no file")
  try:
    n, fps = _video_meta(path)
    idx = video_frame_indices(n, fps, clips=clips, clip_duration=clip_duration,
                              frames_per_clip=frames_per_clip)
    frames = decode_frames(path, sorted({i for c in idx for i in c}))
  except MediaError:
    raise
  except Exception as e:  # noqa: BLE001
    raise _media_err(path, "video", f"undecodable data ({type(e).__name__}: {e})") from e
  return video_transform_frames([np.stack([frames[i] for i in c]) for c in idx],
                                spatial_crops=spatial_crops)


def load_vision(path: str, **video_kw) -> torch.Tensor:
  """An image file → ``[3, 224, 224]``; anything else is decoded as a video."""
  if path.lower().endswith(IMAGE_EXTS):
    return load_image(path)
  return load_video(path, **video_kw)


# ----------------------------------------------------------------------------- text


@functools.lru_cache(maxsize=1)
def _tokenizer():
  from embed import imagebind_loader
  mm = imagebind_loader.import_imagebind()["multimodal_preprocessors"]
  return mm.SimpleTokenizer(bpe_path=imagebind_loader.bpe_path(), context_length=CONTEXT_LENGTH)


def tokenize(texts: Sequence[str]) -> torch.Tensor:
  """ImageBind's BPE tokenizer → int64 ``[N, 77]`` (start token, BPE ids, end token, zeros)."""
  tok = _tokenizer()
  return torch.stack([tok(t) for t in texts], dim=0) if texts else torch.zeros(
      (0, CONTEXT_LENGTH), dtype=torch.long)


# ---------------------------------------------------------------------------- depth


def depth_to_disparity(depth_m: np.ndarray, *, focal: float = NYU_FOCAL,
                       baseline: float = NYU_BASELINE, min_depth: float = DEPTH_MIN,
                       max_depth: float = DEPTH_MAX) -> np.ndarray:
  """``baseline · focal / clip(depth, min_depth, max_depth)`` (depth in metres)."""
  d = np.clip(np.asarray(depth_m, np.float32), min_depth, max_depth)
  return (baseline * focal / d).astype(np.float32)


def depth_transform(disparity: np.ndarray) -> torch.Tensor:
  """Omnivore/ImageBind ``DepthNorm(max_depth=75, clamp_max_before_scale=True)``,
  short side to 224, centre crop, normalise → float32 ``[1, 224, 224]``."""
  x = torch.from_numpy(np.ascontiguousarray(disparity, np.float32))
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 2:
    raise ValueError(f"depth map: expected a 2-D array [H, W], found shape {tuple(x.shape)}")
  x = x.clamp(min=DEPTH_MIN, max=DISPARITY_MAX) / DISPARITY_MAX
  h, w = x.shape
  short, long = min(h, w), max(h, w)
  nl = int(IMAGE_SIZE * long / short)
  nh, nw = (IMAGE_SIZE, nl) if h <= w else (nl, IMAGE_SIZE)
  x = x[None, None]
  if (nh, nw) != (h, w):
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
  top, left = _center_crop_offsets(nh, nw, IMAGE_SIZE)
  x = x[0, :, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
  return (x - DEPTH_MEAN) / DEPTH_STD


def read_depth_file(path: str, *, png_scale: float = 1000.0) -> np.ndarray:
  """A ``.npy`` float map (as stored) or a 16-bit ``.png`` (integer / ``png_scale``,
  i.e. millimetres → metres by default) → float32 ``[H, W]``."""
  if not os.path.isfile(path):
    raise _media_err(path, "depth", "no file")
  try:
    if path.lower().endswith(".npy"):
      a = np.load(path, allow_pickle=False).astype(np.float32)
    else:
      from PIL import Image
      with Image.open(path) as im:
        a = np.asarray(im).astype(np.float32) / png_scale
  except Exception as e:  # noqa: BLE001
    raise _media_err(path, "depth", f"undecodable data ({type(e).__name__}: {e})") from e
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.ndim != 2 or min(a.shape) < 1:
    raise _media_err(path, "depth", f"an array of shape {a.shape} (expected [H, W])")
  if not np.isfinite(a).all():
    raise _media_err(path, "depth", "non-finite values")
  return a


def load_depth(path: str, *, kind: str = "depth", **kw) -> torch.Tensor:
  """Reads a depth (metres) or disparity map and applies :func:`depth_transform`.

  Args:
    kind: ``"depth"`` (metres; converted with :func:`depth_to_disparity`) or
      ``"disparity"`` (already ``baseline·focal/depth``).
  """
  a = read_depth_file(path)
  if kind == "depth":
    a = depth_to_disparity(a, **kw)
  elif kind != "disparity":
    raise ValueError(f"depth kind: expected 'depth' or 'disparity', found {kind!r}")
  return depth_transform(a)
