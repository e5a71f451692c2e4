# Step progress of guest-image/build.sh, on stderr only (stdout carries the
# output directory, which callers read). On a terminal, with CI unset, each
# step replaces the previous one on a single line:
#   guest-image: [3/8] kernel modules (12 s)
# where the seconds count from the first step; a log line clears it first and
# progress_end leaves a clean line. Elsewhere (a pipe, a CI log) it prints
# nothing and build.sh's output stays as it was. Sourced by build.sh; it does
# not change what the build produces, so it is not one of the hashed inputs.

PROGRESS_LIVE=0   # 1: draw the live line
PROGRESS_SHOWN=0  # 1: a live line is on the terminal now
PROGRESS_TOTAL=0
PROGRESS_START=0
PROGRESS_COLS=80

# progress_init TOTAL: live only when stderr is a terminal (not TERM=dumb) and
# CI is unset, empty, "false" or "0".
progress_init() {
  PROGRESS_TOTAL=$1
  PROGRESS_START=$SECONDS
  PROGRESS_LIVE=0
  PROGRESS_SHOWN=0
  case "${CI:-}" in
    ""|false|0) [ -t 2 ] && [ "${TERM:-}" != dumb ] && PROGRESS_LIVE=1 ;;
  esac
  if [ "$PROGRESS_LIVE" = 1 ]; then
    local size
    size=$(stty size <&2 2>/dev/null) || size=
    PROGRESS_COLS=${size#* }
    [[ "$PROGRESS_COLS" =~ ^[0-9]+$ ]] && [ "$PROGRESS_COLS" -gt 1 ] || PROGRESS_COLS=80
  fi
  return 0
}

# progress_step N LABEL: shows step N of TOTAL, cut one column short of the
# terminal's width (a full line wraps, and \r would return to the wrong row).
progress_step() {
  [ "$PROGRESS_LIVE" = 1 ] || return 0
  local line="guest-image: [$1/$PROGRESS_TOTAL] $2 ($((SECONDS - PROGRESS_START)) s)"
  printf '\r\033[2K%s' "${line:0:PROGRESS_COLS-1}" >&2
  PROGRESS_SHOWN=1
}

# progress_clear: erases the live line, if one is shown (before other output).
progress_clear() {
  [ "$PROGRESS_SHOWN" = 1 ] || return 0
  printf '\r\033[2K' >&2
  PROGRESS_SHOWN=0
}

# progress_end: a clean line, and no more live steps.
progress_end() {
  progress_clear
  PROGRESS_LIVE=0
}
