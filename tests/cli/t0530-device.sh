#!/bin/sh
# --device cuda through the programs, on the emulated device (build/emu/bin:
# dsv4-prefill and dsv4-decode linked with the kernels compiled for the CPU,
# kernels/emu.h): snapshots written on the GPU are intact and continue on
# the CPU and back, greedy decoding picks the CPU's tokens, seeded sampling
# on the GPU repeats itself, the GPU's logits stay close to the CPU's, also
# for models re-encoded by dsv4-quant (Q3 weights).
. "$(dirname "$0")/lib.sh"

# DSV4_DEVICE_BIN=bin runs the same checks on a real GPU with this build's
# programs (./configure --with-cuda)
EMU=${DSV4_DEVICE_BIN:-$TOP/build/emu/bin}
case $EMU in /*) ;; *) EMU=$TOP/$EMU ;; esac
if [ ! -x "$EMU/dsv4-prefill" ] || [ ! -x "$EMU/dsv4-decode" ]; then
    echo "skipped: no $EMU/dsv4-prefill and dsv4-decode (make tests builds the emulated device's)"
    exit 77
fi
V=1024
ids() { awk -v s="$1" -v n="$2" -v v=$V 'BEGIN { x = s; for (i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d\n", 2 + x % (v - 2) } }'; }
same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }

expect 0 "convert tiny-v4-csa" -- dsv4-convert -q -o csa.dsv4 "$FIXTURES/tiny-v4-csa"
{ echo 0; ids 5 40; } > p.txt
ids 9 6 > more.txt

# ---- prefill on the GPU, the snapshot continues on the CPU -------------------------
expect 0 "GPU prefill -o" -- "$EMU/dsv4-prefill" -m csa.dsv4 --device cuda --kv compact -i p.txt -o g.kv --logits g.f32
grep_err "^dsv4-prefill: 41 tokens in .*KV compact" "GPU prefill: summary (state read back from the GPU)"
expect 0 "kvdump --verify of the GPU's snapshot" -- dsv4-kvdump --verify g.kv
expect 0 "CPU prefill -o" -- dsv4-prefill -q -m csa.dsv4 --device cpu --kv compact -i p.txt -o c.kv --logits c.f32
if command -v python3 >/dev/null 2>&1; then
    # e = max |g - c| / max |c| over the last position's logits
    close() {
        python3 - "$1" "$2" "$3" <<'EOF'
import struct, sys
a, b = (open(p, 'rb').read() for p in sys.argv[1:3])
n = len(b) // 4
x, y = struct.unpack('<%df' % n, a), struct.unpack('<%df' % n, b)
e = max(abs(p - q) for p, q in zip(x, y)) / max(abs(q) for q in y)
print('rel err %.3g' % e)
sys.exit(0 if e <= float(sys.argv[3]) else 1)
EOF
    }
    if close g.f32 c.f32 1e-3 >cl.log; then ok "GPU logits close to the CPU's ($(cat cl.log))"
    else bad "GPU logits far from the CPU's ($(cat cl.log))"; fi
fi

expect 0 "CPU continues the GPU's snapshot" -- dsv4-prefill -q -m csa.dsv4 --device cpu -r g.kv -i more.txt -o gc.kv --logits gc.f32
expect 0 "CPU continues the CPU's snapshot" -- dsv4-prefill -q -m csa.dsv4 --device cpu -r c.kv -i more.txt -o cc.kv --logits cc.f32
expect 0 "GPU continues the CPU's snapshot" -- "$EMU/dsv4-prefill" -q -m csa.dsv4 --device cuda -r c.kv -i more.txt -o cg.kv --logits cg.f32
expect 0 "kvdump --tokens of GPU then CPU" -- dsv4-kvdump --tokens gc.kv
cp out gc.tok
expect 0 "kvdump --tokens of the CPU-only run" -- dsv4-kvdump --tokens cc.kv
same gc.tok out "GPU then CPU holds the same tokens as CPU only"
if command -v python3 >/dev/null 2>&1; then
    if close gc.f32 cc.f32 1e-3 >cl.log; then ok "GPU->CPU resume: logits close ($(cat cl.log))"
    else bad "GPU->CPU resume: logits far ($(cat cl.log))"; fi
    if close cg.f32 cc.f32 1e-3 >cl.log; then ok "CPU->GPU resume: logits close ($(cat cl.log))"
    else bad "CPU->GPU resume: logits far ($(cat cl.log))"; fi
fi

# ---- decoding on the GPU -----------------------------------------------------------
expect 0 "GPU greedy decode" -- "$EMU/dsv4-decode" -m csa.dsv4 --device cuda -r c.kv -n 6 --temperature 0 --format text -o gd.kv
cp out gd.txt
expect 0 "CPU greedy decode" -- dsv4-decode -m csa.dsv4 --device cpu -r c.kv -n 6 --temperature 0 --format text
same gd.txt out "greedy: the GPU picks the CPU's tokens"
expect 0 "kvdump --verify of the GPU's decode snapshot" -- dsv4-kvdump --verify gd.kv
expect 0 "GPU sampled decode, seed 7" -- "$EMU/dsv4-decode" -m csa.dsv4 --device cuda -r c.kv -n 6 --seed 7 --top-p 0.9 --format text
cp out s1.txt
expect 0 "again, through a GPU-written snapshot" -- "$EMU/dsv4-decode" -m csa.dsv4 --device cuda -r c.kv -n 3 --seed 7 --top-p 0.9 --format text -o s.kv
cp out s2.txt
expect 0 "and on from it" -- "$EMU/dsv4-decode" -m csa.dsv4 --device cuda -r s.kv -n 3 --seed 7 --top-p 0.9 --format text
cat s2.txt out > s12.txt
same s1.txt s12.txt "seeded sampling on the GPU repeats across a save and resume"
# ---- a dsv4-quant'ed model (Q3 routed experts) on the GPU ------------------------
expect 0 "quantise the experts to Q3" -- dsv4-quant -q -R experts-q3 csa.dsv4 q3.dsv4
expect 0 "GPU prefill, Q3 experts" -- "$EMU/dsv4-prefill" -q -m q3.dsv4 --device cuda -i p.txt --logits q3g.f32
expect 0 "CPU prefill, Q3 experts" -- dsv4-prefill -q -m q3.dsv4 --device cpu -i p.txt --logits q3c.f32
if command -v python3 >/dev/null 2>&1; then
    if close q3g.f32 q3c.f32 1e-3 >cl.log; then ok "Q3 experts: GPU logits close to the CPU's ($(cat cl.log))"
    else bad "Q3 experts: GPU logits far from the CPU's ($(cat cl.log))"; fi
fi
expect 0 "the fit-80g recipe (Q3 experts, attention and shared weights)" -- dsv4-quant -q -R fit-80g csa.dsv4 f80.dsv4
expect 0 "GPU prefill, fit-80g" -- "$EMU/dsv4-prefill" -q -m f80.dsv4 --device cuda -i p.txt --logits f80g.f32
expect 0 "CPU prefill, fit-80g" -- dsv4-prefill -q -m f80.dsv4 --device cpu -i p.txt --logits f80c.f32
if command -v python3 >/dev/null 2>&1; then
    if close f80g.f32 f80c.f32 1e-3 >cl.log; then ok "fit-80g: GPU logits close to the CPU's ($(cat cl.log))"
    else bad "fit-80g: GPU logits far from the CPU's ($(cat cl.log))"; fi
fi
expect 0 "auto picks the (emulated) GPU" -- "$EMU/dsv4-prefill" -q -m csa.dsv4 --kv compact -i p.txt --logits a.f32
same g.f32 a.f32 "--device auto = cuda when a device is present"

finish
