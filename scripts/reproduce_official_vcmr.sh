#!/usr/bin/env bash
# The official VCMR evaluation reproduced through the command line alone (docs/reproduce.md §0):
# convert an official_vcmr_e2e fixture's reference stores, predict with its reference checkpoint,
# score both submissions and compare the metrics with what the official validate_full_vcmr gave.
#
#   bash scripts/reproduce_official_vcmr.sh [FIXTURE_DIR [WORK_DIR]]
#
# FIXTURE_DIR defaults to the copy bundled with the tests; WORK_DIR to a new temporary directory
# (the stores are copied there: LMDB writes a lock file beside a store it opens).
set -euo pipefail
F=${1:-$(dirname "$0")/../tests/fixtures/official_vcmr_e2e}
W=${2:-$(mktemp -d)}
mkdir -p "$W"
cp -r "$F/video_db" "$F/txt_db" "$W/" && chmod -R u+w "$W"
hero data from-reference --video-db "$W/video_db/tv" --sub-db "$W/txt_db/tv_subtitles.db" \
    --txt-db "tvr:val=$W/txt_db/tvr_val.db" --tokenizer "$F/tokenizer" --dtype float32 --out "$W/corpus"
# task, sizes and evaluation settings come from the checkpoint's ../log/hps.json and model_config.json
hero predict --model "$F/checkpoint/ckpt/model_step_1000.pt" --corpus "$W/corpus" --dataset tvr --split val \
    --out "$W/tvr_val.json" --device cpu
hero eval retrieval --submission "$W/tvr_val.json" --gt "$F/raw/tvr_val_release.jsonl" --out "$W/metrics.json" > /dev/null
hero eval retrieval --submission "$W/tvr_val_nms.json" --gt "$F/raw/tvr_val_release.jsonl" \
    --out "$W/metrics_nms.json" > /dev/null
python - "$W" "$F" <<'PY'
import json, sys
w, f = sys.argv[1:]
official = json.load(open(f"{f}/expected/metrics.json"))
for ours, part in (("metrics", "no_nms"), ("metrics_nms", "nms")):
    got = json.load(open(f"{w}/{ours}.json"))
    bad = [t for t, v in official[part].items() if got.get(t) != v]
    if bad:
        sys.exit(f"{part}: {bad} differ from the official metrics")
print(f"official metrics reproduced, without and after NMS (outputs in {w})")
PY
