#!/usr/bin/env bash
# Builds the API reference from the docstrings with pdoc (offline). Output: docs/api/ (or $1).
set -euo pipefail
out=${1:-docs/api}
mods="vlal vlal.scoring vlal.strategies vlal.loop vlal.tuners vlal.data vlal.bench vlal.registry vlal.exceptions vlal.session vlal.shards vlal.alignment"
python -c "import torch, open_clip" 2>/dev/null && mods="$mods vlal.clip"
python -c "import skactiveml, modAL" 2>/dev/null && mods="$mods vlal.integrations !vlal.integrations._common"
python -m pdoc -d numpy -o "$out" $mods
echo "API reference: $out/index.html"
