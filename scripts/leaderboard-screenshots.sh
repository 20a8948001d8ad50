#!/usr/bin/env bash
# The pictures of the leaderboard page in docs/leaderboard.md (docs/leaderboard-1280.png and -400.png): three
# registry models run on 3 countries × 3 topics × 8 values, then `valuelens leaderboard --paper
# --common`, photographed by headless Chromium (Debian's `chromium`) at 1280 and 400 px.
# Not part of CI (a few minutes of runs); usage: scripts/leaderboard-screenshots.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/leaderboard-shots.XXXX)}
cargo build --release -q
bin=target/release/valuelens
for model in smollm2-135m gemma3-270m qwen2.5-coder-0.5b; do
    $bin run --model "$model" --countries Egypt,India,Germany \
        --topics "Religion,Politics,Work Orientation" \
        --values Equality,Wealth,Honest,Humble,Freedom,Obedient,Curious,Loyal \
        --out "$work/runs/$model"
done
$bin leaderboard "$work/runs" --paper --common --out "$work/board"
for size in 1280,1500 400,1400; do
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --window-size="$size" --screenshot="docs/leaderboard-${size%,*}.png" \
        "file://$work/board/index.html"
done
echo "written: docs/leaderboard-1280.png docs/leaderboard-400.png (from $work)"
