"""Dataset adapters on tiny fake layouts (index files + empty media placeholders).
These need neither torch nor media decoding."""

import csv
import json
import os

import pytest

from embed.datasets import ADAPTERS, DatasetError, load_dataset


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, "wb").close()


def test_all_adapters_registered():
  assert sorted(ADAPTERS) == sorted(
      ["manifest", "msrvtt", "vggsound_s", "didemo", "ave", "vggs10k", "nyuv2"])


def test_msrvtt_1ka(tmp_path):
  r = str(tmp_path)
  vids = [f"video{i}" for i in range(5)]
  data = {"videos": [{"video_id": v, "category": i % 3} for i, v in enumerate(vids)],
          "sentences": [{"video_id": v, "caption": f"{v} caption {k}", "sen_id": 10 * i + (3 - k)}
                        for i, v in enumerate(vids) for k in range(3)]}
  json.dump(data, open(os.path.join(r, "MSRVTT_data.json"), "w"))
  with open(os.path.join(r, "MSRVTT_train.9k.csv"), "w") as f:
    f.write("video_id\nvideo0\nvideo1\nvideo2\n")
  with open(os.path.join(r, "MSRVTT_JSFUSION_test.csv"), "w") as f:
    f.write("key,vid_key,video_id,sentence\nret0,msr7,video3,a man sings\nret1,msr8,video4,a dog\n")
  for v in vids:
    _touch(os.path.join(r, "videos", "all", f"{v}.mp4"))
  ds = load_dataset("msrvtt", r)
  assert ds.modalities == ("vision", "audio", "text")
  assert [it.id for it in ds.splits["train"]] == ["video0", "video1", "video2"]
  assert ds.splits["train"][0].text == "video0 caption 2"  # lowest sen_id
  assert ds.splits["test"][0].text == "a man sings"
  assert ds.splits["test"][1].label == 4 % 3 and len(ds.class_names) == 20
  assert ds.splits["train"][0].audio == ds.splits["train"][0].vision


def test_vggsound_s_sampling_is_seeded_and_recorded(tmp_path):
  r = str(tmp_path)
  rows = []
  for i in range(30):
    rows.append((f"yt{i:03d}", 10 * i, ["dog barking", "playing piano"][i % 2],
                 "train" if i < 20 else "test"))
  with open(os.path.join(r, "vggsound.csv"), "w", newline="") as f:
    csv.writer(f).writerows(rows)
  for y, s, _, _ in rows[:-2]:  # two test clips are not on disk
    _touch(os.path.join(r, "video", f"{y}_{s:06d}.mp4"))
  a = load_dataset("vggsound_s", r, seed=1, n_train=8, n_test=4)
  b = load_dataset("vggsound_s", r, seed=1, n_train=8, n_test=4)
  c = load_dataset("vggsound_s", r, seed=2, n_train=8, n_test=4)
  ids = lambda d: [it.id for it in d.splits["train"]]  # noqa: E731
  assert ids(a) == ids(b) != ids(c)
  assert len(a.splits["train"]) == 8 and len(a.splits["test"]) == 4
  assert a.extra["seed"] == 1 and a.extra["on_disk"] == {"train": 20, "test": 8}
  it = a.splits["train"][0]
  assert it.text == a.class_names[it.label]
  with pytest.raises(DatasetError, match="at least 9"):
    load_dataset("vggsound_s", r, n_train=8, n_test=9)


def test_didemo_paragraphs(tmp_path):
  r = str(tmp_path)
  for split, vids in (("train", ["a_1.mov", "b_2.mov"]), ("test", ["c_3.mov"])):
    anns = [{"video": v, "description": f"{v} part {k}", "times": [[0, 1]]}
            for v in vids for k in range(2)]
    json.dump(anns, open(os.path.join(r, f"{split}_data.json"), "w"))
  _touch(os.path.join(r, "videos", "a_1.mp4"))
  ds = load_dataset("didemo", r)
  assert [it.id for it in ds.splits["train"]] == ["a_1", "b_2"]
  assert ds.splits["train"][0].text == "a_1.mov part 0 a_1.mov part 1"
  assert ds.splits["train"][0].vision.endswith("a_1.mp4")
  assert ds.splits["train"][1].vision.endswith("b_2.mp4")  # missing: reported by the stage


def test_ave(tmp_path):
  base = tmp_path / "AVE_Dataset"
  base.mkdir()
  (base / "trainSet.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n"
                                     "Church bell&v1&good&0&10\nDog&v2&good&0&10\n")
  (base / "testSet.txt").write_text("Dog&v3&good&0&10\n")
  ds = load_dataset("ave", str(tmp_path))
  assert ds.modalities == ("vision", "audio")
  assert ds.class_names == ["Church bell", "Dog"]
  assert [(it.id, it.label) for it in ds.splits["train"]] == [("v1", 0), ("v2", 1)]
  assert ds.splits["test"][0].vision.endswith(os.path.join("AVE", "v3.mp4"))


def test_vggs10k_and_nyuv2(tmp_path):
  r = tmp_path / "vggs"
  r.mkdir()
  (r / "vggs10k.csv").write_text("id,label,split\nx1,cat,train\nx2,dog,test\n")
  _touch(str(r / "audio" / "x1.wav"))
  ds = load_dataset("vggs10k", str(r))
  assert ds.splits["train"][0].audio.endswith("x1.wav")
  assert ds.splits["test"][0].audio.endswith(os.path.join("video", "x2.mp4"))
  n = tmp_path / "nyu"
  n.mkdir()
  (n / "nyuv2.csv").write_text("id,split,scene\n0001,train,living_room\n0002,test,kitchen\n")
  _touch(str(n / "depth" / "0002.png"))
  ds = load_dataset("nyuv2", str(n))
  assert ds.modalities == ("depth", "text")
  assert ds.splits["train"][0].text == "living room"
  assert ds.splits["test"][0].depth.endswith("0002.png")
  assert ds.class_names == ["kitchen", "living_room"]
  (n / "nyuv2.csv").write_text("id,split,scene\n0001,val,kitchen\n")
  with pytest.raises(DatasetError, match="split"):
    load_dataset("nyuv2", str(n))


def test_manifest_errors_name_the_file(tmp_path):
  with pytest.raises(DatasetError, match="manifest.csv"):
    load_dataset("manifest", str(tmp_path))
  (tmp_path / "manifest.csv").write_text("id,split,vision,colour\na,train,x.png,red\n")
  with pytest.raises(DatasetError, match="colour"):
    load_dataset("manifest", str(tmp_path))
  (tmp_path / "manifest.csv").write_text("id,split,text\na,train,hi\na,train,ho\n")
  with pytest.raises(DatasetError, match="duplicates"):
    load_dataset("manifest", str(tmp_path))
  (tmp_path / "manifest.csv").write_text("id,split,text,label\na,,hi,cat\nb,test,ho,dog\n")
  ds = load_dataset("manifest", str(tmp_path))
  assert ds.modalities == ("text",) and ds.class_names == ["cat", "dog"]
  assert ds.splits["train"][0].label == 0 and ds.splits["test"][0].label == 1
