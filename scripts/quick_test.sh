#!/usr/bin/env bash
# Quick end-to-end check (about two minutes on a small CPU): with a tiny local wav2vec model,
#   1. train on a short rendered clip (musichal-train, hybrid perception),
#   2. run the live stack on it (musichal --input-file ... --duration 8 --record),
#   3. run the comparison (musichal-compare, JSON validated against the schema, PNG written).
# Prints one PASS / FAIL / SKIP line per step and exits non-zero when any step FAILs.
# Needs fluidsynth + FluidR3_GM and jackd (a dummy JACK server is started, and stopped after, if none runs).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export JACK_NO_START_SERVER=1 RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORK=$(mktemp -d -t musichal_quick.XXXXXX)
JACK_PID=""
FAILED=0
cleanup() {
    if [[ -n "$JACK_PID" ]]; then kill "$JACK_PID" 2>/dev/null; wait "$JACK_PID" 2>/dev/null; fi
    if [[ "${KEEP_QUICK_TEST:-0}" != "1" ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

step() {  # step NAME LOG COMMAND...: run, print PASS/FAIL with the time taken and the log tail on failure
    local name=$1 log=$2; shift 2
    local started=$SECONDS
    if "$@" >"$log" 2>&1; then
        printf 'PASS %-8s (%ds)\n' "$name" $((SECONDS - started))
        return 0
    fi
    printf 'FAIL %-8s (%ds): see below\n' "$name" $((SECONDS - started))
    tail -n 15 "$log" | sed 's/^/    /'
    FAILED=1
    return 1
}

# -- setup: tiny wav2vec checkpoint (like tests/conftest.py), a 12 s rendered clip and its MIDI
setup() {
    "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

sys.path.insert(0, ".")
from testkit.audio import render_midi_notes, write_midi_notes

work = Path(sys.argv[1])
torch.manual_seed(0)
config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                        feat_extract_norm="group", do_stable_layer_norm=False,
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
Wav2Vec2Model(config).eval().save_pretrained(work / "tiny_w2v", safe_serialization=True)
Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                         return_attention_mask=False).save_pretrained(work / "tiny_w2v")
melody = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 67, 64, 60, 72, 67]
notes = [(pitch, 0.1 + 0.6 * i, 0.5, 100) for i, pitch in enumerate(melody)]
render_midi_notes(notes, work / "clip.wav")
write_midi_notes(notes, work / "clip_reference.mid")
print("clip:", work / "clip.wav")
EOF
}
step setup "$WORK/setup.log" setup || { echo "FAIL: setup failed, nothing else can run"; exit 1; }
W2V="$WORK/tiny_w2v"

# -- 1. train
TRAIN_OK=0
if [[ -x .venv/bin/musichal-train ]] && ! grep -q "not built yet" services/trainer/cli.py; then
    step train "$WORK/train.log" .venv/bin/musichal-train --file "$WORK/clip.wav" --output "$WORK/model.json" \
        --wav2vec --hybrid-perception --wav2vec-model "$W2V" --vocabulary-size 16 --workers 1 --quiet \
        && [[ -s "$WORK/model.json" ]] && TRAIN_OK=1
else
    echo "SKIP train    (musichal-train is not built yet)"
fi

# -- 2. live stack on the clip, MIDI recorded
if [[ $TRAIN_OK == 1 ]]; then
    if ! jack_wait --check 2>/dev/null | grep -q "^running"; then
        jackd --no-realtime -d dummy -r 48000 -p 256 >"$WORK/jackd.log" 2>&1 &
        JACK_PID=$!
        jack_wait --wait --timeout 15 >/dev/null 2>&1 || { echo "FAIL live     (could not start a JACK dummy server)"; FAILED=1; }
    fi
    live() {
        .venv/bin/musichal --input-file "$WORK/clip.wav" --model "$WORK/model.json" \
            --duration 8 --record "$WORK/out.mid" --midi-api jack --quiet || return 1  # the model says how to listen
        "$PY" -c "
import sys, mido
notes = sum(1 for m in mido.MidiFile(sys.argv[1]) if m.type == 'note_on' and m.velocity > 0)
print('recorded notes:', notes)
sys.exit(0 if notes > 0 else 1)" "$WORK/out.mid"
    }
    step live "$WORK/live.log" live && tail -n 1 "$WORK/live.log" | sed 's/^/    /'
else
    echo "SKIP live     (no trained model)"
fi

# -- 3. comparison
compare() {
    .venv/bin/musichal-compare --file "$WORK/clip.wav" --wav2vec-model "$W2V" --reference "$WORK/clip_reference.mid" \
        --vocabulary-size 8 --output "$WORK/compare.json" --plot "$WORK/compare.png" || return 1
    "$PY" -c "
import json, os, sys
from services.compare.schema import validate
results = json.load(open(sys.argv[1]))
validate(results)
if os.path.getsize(sys.argv[2]) < 20000:
    sys.exit('plot is missing or too small')
print('overall:', [r['choice'] for r in results['recommendations'] if r['criterion'] == 'overall'][0])" \
        "$WORK/compare.json" "$WORK/compare.png"
}
step compare "$WORK/compare.log" compare && tail -n 1 "$WORK/compare.log" | sed 's/^/    /'

if [[ $FAILED == 0 ]]; then echo "quick test: PASS"; else echo "quick test: FAIL"; fi
exit $FAILED
