#!/bin/sh
# kernloop's nvcc launcher: nvcc --threads chosen per build, not per configure.
#
# CMake puts this first in the CUDA compiler launcher list ("<this>;ccache"), so every nvcc
# command is "<this> [ccache] nvcc ... --threads=N ...". When the build sets
# KERNLOOP_NVCC_THREADS_NOW (python -m buildtools build does when only a few TUs are dirty),
# --threads=N becomes --threads=min(that, the number of -gencode targets of this TU); otherwise
# the command runs unchanged. build.ninja never changes, so switching between a cold build and
# an edit rebuilds nothing, and ccache leaves --threads out of its key (ignore_options), so the
# cache hits either way.
want="${KERNLOOP_NVCC_THREADS_NOW:-}"
case "$want" in
  '' | *[!0-9]* | 0) exec "$@" ;;
esac
n=0
for a do
  case "$a" in
    -gencode | -gencode=* | --generate-code | --generate-code=*) n=$((n + 1)) ;;
  esac
done
if [ "$n" -gt 0 ] && [ "$want" -gt "$n" ]; then
  want=$n
fi
for a do
  shift
  case "$a" in
    --threads=*) [ "${a#--threads=}" -lt "$want" ] 2>/dev/null && a="--threads=$want" ;;
  esac
  set -- "$@" "$a"
done
exec "$@"
