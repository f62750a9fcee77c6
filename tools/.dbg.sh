export LD_LIBRARY_PATH=$(dirname $(find /tmp/janus-jansson -name 'libjansson.so.4*' | head -1))
ninja -C build-cuda > /dev/null || exit 1
JANUS_GPU_PROFILE=1 build-cuda/janus bench e2e --model inputs/configs/qwen3-30b-a3b --synthetic --batch 64 --context 512 --steps 8 2>&1 | tail -12
