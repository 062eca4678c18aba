#!/usr/bin/env bash
# Coverage-guided fuzzing of headroom's parsers with cargo-fuzz (libFuzzer, nightly).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 600 s each, every target, one after another
#
# Targets (fuzz/fuzz_targets/<target>.rs, one line each; the bodies are in
# crates/headroom-fuzz/src/lib.rs): files, time, limits, config, audit, card, prometheus.
#
# For each target: fuzz for SECONDS from fuzz/corpus/<target>/ with
# -timeout=10 -rss_limit_mb=2048 -max_len=<per target>, minimize the corpus
# (as cargo fuzz cmin does, keeping every coverage edge), then print
# executions per second, the corpus size (files, bytes) and whether a crash
# was found. Exits non-zero if any target crashed.
# libFuzzer runs in fork mode with -ignore_crashes/-ignore_timeouts/-ignore_ooms,
# so a crash is saved and fuzzing goes on for the whole SECONDS (a known,
# not yet fixed crash does not stop the run).
# Everything runs under `nice -n 15`. Logs: fuzz/target/fuzz-logs/<target>.log.
# Set FUZZ_SANITIZER=address to build with AddressSanitizer (default none:
# headroom is safe Rust; ASan halves the speed). The targets are built once,
# up front (FUZZ_BUILD=0 skips that and uses the binaries already built), so
# every target fuzzes the same code even if the tree changes meanwhile.
# SECONDS=0 only minimizes the corpora.
#
# A crash, hang (timeout-*) or huge allocation (oom-*) is saved as
# fuzz/artifacts/<target>/<kind>-<sha1>. To reproduce one (prints the panic):
#
#   cd fuzz && RUST_BACKTRACE=1 cargo +nightly fuzz run -s none <target> artifacts/<target>/crash-<sha1>
#
# or, on stable, replay every corpus file and artifact through the same code:
#
#   cargo test -p headroom-fuzz --test corpora
#
# Shrink it first if it is large: cargo +nightly fuzz tmin -s none <target> artifacts/<target>/crash-<sha1>.
# Keep the artifact (git add fuzz/artifacts/<target>/...) once the parser is
# fixed, so the corpus test keeps it fixed.
set -euo pipefail

secs="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
nice=(nice -n 15)
sanitizer="${FUZZ_SANITIZER:-none}"
build=(-s "$sanitizer" --codegen-units 16)

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# Longest input per target: room for every seed (a shortened card, a few
# audit lines of ~1 kB each, the sample headroom.toml), small enough to keep
# the corpora small.
max_len() {
    case "$1" in
        time) echo 128 ;;
        *) echo 4096 ;;
    esac
}

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    "${nice[@]}" cargo +nightly install cargo-fuzz --locked
fi

if [ "${FUZZ_BUILD:-1}" != 0 ]; then
    echo "== building the fuzz targets (sanitizer: $sanitizer)"
    "${nice[@]}" cargo +nightly fuzz build "${build[@]}"
fi
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

mkdir -p target/fuzz-logs
summary=()
crashed=0
for t in "${targets[@]}"; do
    len="$(max_len "$t")"
    log="target/fuzz-logs/$t.log"
    mkdir -p "corpus/$t" "artifacts/$t"
    before="$(ls "artifacts/$t" | sort)"
    status=0
    if [ "$secs" -gt 0 ]; then
        echo "== $t: fuzzing ${secs}s (max_len $len), log $log"
        # What `cargo fuzz run` does, without building again.
        "${nice[@]}" "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
            -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$len" \
            -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 >"$log" 2>&1 || status=$?
    else
        : >"$log"
    fi
    new="$(comm -13 <(echo "$before") <(ls "artifacts/$t" | sort) | tr '\n' ' ')"
    # Fork mode's last status line: "#<runs>: cov: .. exec/s: .. oom/timeout/crash: a/b/c time: <s>s ..".
    last="$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 || true)"
    runs="$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")"
    elapsed="$(sed -E 's/.* time: ([0-9]+)s.*/\1/' <<<"$last")"
    execs="$(awk -v r="${runs:-0}" -v t="${elapsed:-0}" 'BEGIN { if (t > 0) printf "%d", r / t; else print "?" }')"
    found="$(sed -E 's|.*oom/timeout/crash: ([0-9]+/[0-9]+/[0-9]+).*|\1|' <<<"$last")"
    if [ -n "$new" ] || { [ -n "$found" ] && [ "$found" != "0/0/0" ]; }; then
        crashed=1
        verdict="CRASH (oom/timeout/crash $found): ${new:-see $log}"
        grep -m1 -A2 -E "panicked at" "$log" || true
    elif [ "$status" -ne 0 ]; then
        crashed=1
        verdict="FAILED (exit $status), see $log"
    else
        verdict="no crash"
    fi
    echo "== $t: minimizing the corpus"
    # What `cargo fuzz cmin` does: merge into an empty directory, which keeps
    # the smallest inputs that reach every coverage edge, then swap it in.
    # Edges only (-use_counters=0 -use_cmp=0): keeping every hit-count and
    # comparison feature too made the corpora about ten times larger.
    min="corpus/.$t.min"
    rm -rf "$min" && mkdir -p "$min"
    if "${nice[@]}" "$bin/$t" -merge=1 -use_counters=0 -use_cmp=0 -timeout=10 -rss_limit_mb=2048 -max_len="$len" \
        "$min" "corpus/$t" >>"$log" 2>&1; then
        rm -rf "corpus/$t" && mv "$min" "corpus/$t"
    else
        rm -rf "$min"
        echo "   cmin failed, see $log"
    fi
    files="$(find "corpus/$t" -type f | wc -l)"
    bytes="$(find "corpus/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
    summary+=("$(printf '%-11s %8s exec/s %10s runs %6s files %9s bytes  %s' \
        "$t" "${execs:-?}" "${runs:-?}" "$files" "$bytes" "$verdict")")
done

echo
echo "== summary (${secs}s per target, sanitizer $sanitizer)"
printf '%s\n' "${summary[@]}"
exit "$crashed"
