"""ImageBind preprocessing (embed/preprocess.py) pinned on hand-made inputs."""

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the embed extra (torch) is not installed: "
                            "bash scripts/install_embed.sh .venv/bin/python")
P = pytest.importorskip("embed.preprocess")

LOG_EPS = math.log(float(np.finfo(np.float32).eps))  # -15.942385


def test_image_uniform_colour_is_normalised_per_channel():
  from PIL import Image
  img = Image.new("RGB", (300, 200), (255, 0, 128))
  x = P.image_transform(img)
  assert x.shape == (3, 224, 224)
  want = (np.array([255, 0, 128]) / 255.0 - np.array(P.CLIP_MEAN)) / np.array(P.CLIP_STD)
  np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), want, atol=1e-5)
  np.testing.assert_allclose(x.std(dim=(1, 2)).numpy(), 0.0, atol=1e-5)


def test_image_centre_crop_geometry():
  # 448 x 224 (w x h): no resize (short side already 224), centre crop keeps columns 112..335.
  a = np.zeros((224, 448, 3), np.uint8)
  a[:, 224:] = 255
  from PIL import Image
  x = P.image_transform(Image.fromarray(a))
  black = (0 - P.CLIP_MEAN[0]) / P.CLIP_STD[0]
  white = (1 - P.CLIP_MEAN[0]) / P.CLIP_STD[0]
  np.testing.assert_allclose(x[0, :, :112].numpy(), black, atol=1e-6)
  np.testing.assert_allclose(x[0, :, 112:].numpy(), white, atol=1e-6)


def test_clip_timepoints_uniform_starts():
  assert [(float(a), float(b)) for a, b in P.clip_timepoints(10.0, 2, 3)] == [(0, 2), (4, 6), (8, 10)]
  assert [(float(a), float(b)) for a, b in P.clip_timepoints(1.0, 2, 3)] == [(0, 2)] * 3


def test_video_frame_indices_follow_decord_windows():
  # 30 frames at 10 fps = 3 s; 5 clips of 2 s start at 0, .25, .5, .75, 1 s.
  assert P.video_frame_indices(30, 10.0) == [[0, 19], [3, 22], [5, 24], [8, 27], [10, 29]]


def test_short_side_scale_and_three_crops():
  x = torch.arange(100 * 50, dtype=torch.float32).reshape(1, 1, 100, 50).repeat(3, 2, 1, 1)
  y = P.short_side_scale(x, 224)
  assert y.shape == (3, 2, 448, 224)
  tops = [P.uniform_crop(y, 224, k) for k in (0, 1, 2)]
  assert all(t.shape == (3, 2, 224, 224) for t in tops)
  torch.testing.assert_close(tops[0], y[..., 0:224, :])
  torch.testing.assert_close(tops[1], y[..., 112:336, :])
  torch.testing.assert_close(tops[2], y[..., 224:448, :])


def test_video_transform_order_and_normalisation():
  frames = [np.full((2, 32, 64, 3), v, np.uint8) for v in (0, 255)]
  x = P.video_transform_frames(frames)
  assert x.shape == (6, 3, 2, 224, 224)
  lo = (0 - P.CLIP_MEAN[1]) / P.CLIP_STD[1]
  hi = (1 - P.CLIP_MEAN[1]) / P.CLIP_STD[1]
  np.testing.assert_allclose(x[:3, 1].numpy(), lo, atol=1e-5)  # clip 0's three crops first
  np.testing.assert_allclose(x[3:, 1].numpy(), hi, atol=1e-5)


def _numpy_kaldi_fbank(w, sr=16000, bins=128):
  """Independent reference written from Kaldi's definitions (float64)."""
  win, shift, nfft = 400, 160, 512
  m = 1 + (len(w) - win) // shift
  fr = np.stack([w[i * shift:i * shift + win] for i in range(m)]).astype(np.float64)
  fr -= fr.mean(axis=1, keepdims=True)
  fr = np.concatenate([fr[:, :1] - 0.97 * fr[:, :1], fr[:, 1:] - 0.97 * fr[:, :-1]], axis=1)
  n = np.arange(win)
  fr *= 0.5 - 0.5 * np.cos(2 * np.pi * n / (win - 1))
  spec = np.abs(np.fft.rfft(fr, nfft)) ** 2
  mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
  lo, hi = mel(20), mel(sr / 2)
  d = (hi - lo) / (bins + 1)
  fm = mel(np.arange(nfft // 2) * sr / nfft)
  fb = np.zeros((bins, nfft // 2 + 1))
  for b in range(bins):
    l, c, r = lo + b * d, lo + (b + 1) * d, lo + (b + 2) * d
    fb[b, :nfft // 2] = np.maximum(0, np.minimum((fm - l) / (c - l), (r - fm) / (r - c)))
  return np.log(np.maximum(spec @ fb.T, np.finfo(np.float32).eps))


def test_kaldi_fbank_matches_independent_reference():
  rng = np.random.default_rng(0)
  w = (0.1 * rng.standard_normal(2400)).astype(np.float32)
  got = P.kaldi_fbank(torch.from_numpy(w)).numpy()
  want = _numpy_kaldi_fbank(w)
  assert got.shape == (1 + (2400 - 400) // 160, 128) == want.shape
  np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-4)


def test_kaldi_fbank_constant_signal_is_floored():
  fb = P.kaldi_fbank(torch.full((32000,), 0.25))
  assert fb.shape == (198, 128)
  np.testing.assert_allclose(fb.numpy(), LOG_EPS, atol=1e-4)


def test_kaldi_fbank_tone_peaks_in_nearest_mel_bin():
  sr, f0 = 16000, 1000.0
  t = np.arange(sr) / sr
  fb = P.kaldi_fbank(torch.from_numpy((0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)))
  mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
  centres = mel(20) + (np.arange(128) + 1) * (mel(8000) - mel(20)) / 129
  assert int(fb.mean(0).argmax()) == int(np.abs(centres - mel(f0)).argmin())


def test_resample_preserves_a_tone_and_length():
  t = np.arange(44100) / 44100
  x = torch.from_numpy(np.sin(2 * np.pi * 440 * t).astype(np.float32))[None]
  y = P.resample(x, 44100, 16000)
  assert y.shape == (1, 16000)
  ty = np.arange(16000) / 16000
  np.testing.assert_allclose(y[0, 300:-300].numpy(), np.sin(2 * np.pi * 440 * ty[300:-300]), atol=2e-3)
  assert P.resample(x, 16000, 16000) is x
  ones = P.resample(torch.ones(1, 8000), 8000, 16000)
  assert ones.shape == (1, 16000)
  np.testing.assert_allclose(ones[0, 200:-200].numpy(), 1.0, atol=1e-2)


def test_audio_transform_on_silence_pins_normalised_values():
  x = P.audio_transform(torch.zeros(1, 5 * 16000), 16000)
  assert x.shape == (3, 1, 128, 204)
  floor = (LOG_EPS - P.AUDIO_MEAN) / P.AUDIO_STD  # -1.27762
  pad = (0.0 - P.AUDIO_MEAN) / P.AUDIO_STD  # 0.46706
  np.testing.assert_allclose(x[..., :198].numpy(), floor, atol=1e-4)
  np.testing.assert_allclose(x[..., 198:].numpy(), pad, atol=1e-6)


def test_audio_uses_first_channel_and_resamples():
  sr = 22050
  t = np.arange(3 * sr) / sr
  left = 0.5 * np.sin(2 * np.pi * 700 * t)
  stereo = torch.from_numpy(np.stack([left, np.zeros_like(left)]).astype(np.float32))
  mono = torch.from_numpy(left[None].astype(np.float32))
  torch.testing.assert_close(P.audio_transform(stereo, sr), P.audio_transform(mono, sr),
                             atol=1e-4, rtol=1e-4)


def test_tokenize_matches_clip_bpe():
  tok = P.tokenize(["hello world", "word " * 100])
  assert tok.shape == (2, 77) and tok.dtype == torch.long
  assert tok[0, :5].tolist() == [49406, 3306, 1002, 49407, 0]
  assert tok[1, 0] == 49406 and tok[1, 76] == 49407  # truncated, end token kept


def test_depth_constant_metres_pins_disparity_normalisation():
  x = P.depth_transform(P.depth_to_disparity(np.full((60, 80), 2.0)))
  assert x.shape == (1, 224, 224)
  disp = 0.075 * 518.857901 / 2.0
  want = (disp / 75.0 - 0.0418) / 0.0295  # 7.377…
  np.testing.assert_allclose(x.numpy(), want, rtol=1e-5)
  near = P.depth_transform(P.depth_to_disparity(np.zeros((30, 30))))  # clamps: 0.01 m → 75
  np.testing.assert_allclose(near.numpy(), (1.0 - 0.0418) / 0.0295, rtol=1e-5)


def test_depth_png_is_millimetres(tmp_path):
  from PIL import Image
  p = str(tmp_path / "d.png")
  Image.fromarray(np.full((10, 12), 2000, np.uint16)).save(p)
  np.testing.assert_allclose(P.read_depth_file(p), 2.0)
  torch.testing.assert_close(P.load_depth(p), P.depth_transform(P.depth_to_disparity(np.full((10, 12), 2.0))))


def test_missing_and_garbage_files_name_the_path(tmp_path):
  bad = tmp_path / "x.png"
  bad.write_bytes(b"not an image")
  with pytest.raises(P.MediaError, match="x.png"):
    P.load_image(str(bad))
  with pytest.raises(P.MediaError, match="nope.wav.*no file"):
    P.load_audio(str(tmp_path / "nope.wav"))
  with pytest.raises(P.MediaError, match="v.mp4"):
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 100)
    P.load_video(str(tmp_path / "v.mp4"))


def test_video_without_audio_track(tmp_path):
  from tests import embed_example
  p = str(tmp_path / "silent.mp4")
  embed_example.write_video(p, [1, 2], seconds=2.0, audio=False)
  with pytest.raises(P.MediaError, match="without an audio stream"):
    P.load_audio(p)
  x = P.load_audio(p, silence_if_missing=True)
  assert x.shape == (3, 1, 128, 204)
  np.testing.assert_allclose(x[..., :198].numpy(), (LOG_EPS - P.AUDIO_MEAN) / P.AUDIO_STD, atol=1e-4)
  v = P.load_video(p)
  assert v.shape == (15, 3, 2, 224, 224)
