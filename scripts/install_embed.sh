#!/usr/bin/env bash
# Installs the PyTorch embedding stage's dependencies into an existing venv (idempotent).
#   bash scripts/install_embed.sh .venv/bin/python
# Order matters: torch==2.13.0 first (the CPU wheel on these machines; a bare `torch`
# would resolve to a multi-GB CUDA build), then ImageBind's model code WITHOUT its
# declared deps (it declares torchaudio/torchvision/pytorchvideo/decord/timm, none of
# which we need or can install beside this torch), then the small runtime deps.
# timm is NOT installed: it requires torchvision; embed/imagebind_loader.py stubs the
# two names ImageBind takes from it. espeak-ng (Debian) is only for the tests.
set -euo pipefail
PY="${1:?usage: install_embed.sh VENV_PYTHON}"
PIP=("$PY" -m pip -q --disable-pip-version-check)

have() { "$PY" - "$@" <<'PYEOF'
import importlib.metadata as md, sys
name, want = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
try:
  v = md.version(name)
except md.PackageNotFoundError:
  sys.exit(1)
sys.exit(0 if want is None or v.split("+")[0] == want else 1)
PYEOF
}

if ! have torch; then
  "${PIP[@]}" install "torch==2.13.0"
fi
if ! have imagebind-unofficial 0.1.1; then
  "${PIP[@]}" install --no-deps "imagebind-unofficial==0.1.1"
fi
missing=()
for p in ftfy regex iopath einops av soundfile pillow scikit-learn; do
  have "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  "${PIP[@]}" install "${missing[@]}" "av>=12"
fi

if ! command -v espeak-ng >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
      || echo "install_embed.sh: espeak-ng could not be installed; speech tests will skip" >&2
  else
    echo "install_embed.sh: espeak-ng missing and apt-get unavailable; speech tests will skip" >&2
  fi
fi
"$PY" -c "import torch, av, soundfile, ftfy, regex, iopath, einops; from embed import imagebind_loader as L; L.import_imagebind()" \
  && echo "install_embed.sh: embed stage ready (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
