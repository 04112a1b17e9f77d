#!/usr/bin/env bash
# The real slides of get_data_manifest.tsv into data/ with curl and sha256sum: the same files,
# checks and exit codes as `python get_data.py`, for a machine without the Python stack.
#
#   ./get_data.sh                            every slide in the manifest (over 1 GB)
#   ./get_data.sh CMU-1-Small-Region.svs     only these slides
#   ./get_data.sh --base-url URL             fetch URL/NAME from a mirror instead
#   ./get_data.sh --from DIR                 copy DIR/NAME (a room's shared download) instead
#   options: --dest DIR (data)  --manifest FILE  --retries N (5)
#   environment: GET_DATA_BASE_URL, GET_DATA_FROM, GET_DATA_DEST, GET_DATA_MANIFEST, GET_DATA_RETRIES
#                (an option wins over its variable)
#
# Each file is downloaded to NAME.partial, resumed there after an interruption (curl -C -),
# and renamed to NAME only once its size and sha256 match the manifest; a mismatch removes
# it. With --from DIR each file is copied (cp) to NAME.partial instead and checked the same
# way; one missing from DIR is named and fails. Where the manifest has no sha256 ("-") only the
# size is checked, and the output says so;
# with neither size nor sha256, the server's Content-Length must prove the transfer whole, else
# the file is kept as NAME.partial and not taken as the slide. A symbolic link at NAME.partial is
# refused, never written through.
#
# Exit codes: 0 every slide is here and verified; 1 some slides failed (HTTP error, size or
# sha256 mismatch, a slide missing from --from DIR); 2 invalid usage; 3 no network (DNS failure,
# refused, timed out); 4 cannot write (disk full, no permission).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base_url=${GET_DATA_BASE_URL:-}
from_dir=${GET_DATA_FROM:-}
dest=${GET_DATA_DEST:-data}
manifest=${GET_DATA_MANIFEST:-$here/get_data_manifest.tsv}
retries=${GET_DATA_RETRIES:-5}
hint="to work offline, make synthetic slides: python get_data.py --synthetic 3"
only=()

die() {  # die CODE MESSAGE: one line on stderr, then exit
    echo "get_data.sh: $2" >&2
    exit "$1"
}

while [ $# -gt 0 ]; do
    case $1 in
        --base-url|--from|--dest|--manifest|--retries)
            [ $# -ge 2 ] || die 2 "$1: needs a value"
            case $1 in
                --base-url) base_url=$2 ;;
                --from) from_dir=$2 ;;
                --dest) dest=$2 ;;
                --manifest) manifest=$2 ;;
                --retries) retries=$2 ;;
            esac
            shift 2 ;;
        -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die 2 "unknown option $1 (see --help)" ;;
        *) only+=("$1"); shift ;;
    esac
done
[[ $retries =~ ^[0-9]+$ ]] || die 2 "--retries: must be a number >= 0, got '$retries'"
case $base_url in ''|http://*|https://*) ;; *) die 2 "--base-url: '$base_url' is not an http(s) URL" ;; esac
if [ -n "$from_dir" ]; then
    [ -z "$base_url" ] || die 2 "--from: cannot be combined with --base-url: choose one source"
    where="a USB stick, a share, another attendee's data/"
    [ -d "$from_dir" ] || die 2 "--from: $from_dir is not a folder; give the folder that holds the slides ($where)"
else
    command -v curl >/dev/null || die 2 "needs curl (or use: python get_data.py)"
fi
if command -v sha256sum >/dev/null; then sha256=(sha256sum)
elif command -v shasum >/dev/null; then sha256=(shasum -a 256)
else die 2 "needs sha256sum or shasum"
fi
[ -r "$manifest" ] || die 2 "--manifest: cannot read $manifest"

# The manifest: tab-separated name, url, size, sha256, source; "#" comments; "-" is unknown.
names=() urls=() sizes=() sums=()
header_seen=
while IFS=$'\t' read -r name url size sum _source; do
    case $name in ''|'#'*) continue ;; esac
    if [ -z "$header_seen" ]; then
        [ "$name $url $size $sum" = "name url size sha256" ] || die 2 "$manifest: the first row must be the header"
        header_seen=1
        continue
    fi
    names+=("$name") urls+=("$url") sizes+=("$size") sums+=("$sum")
done < "$manifest"

selected=()
if [ ${#only[@]} -eq 0 ]; then
    selected=("${!names[@]}")
else
    for wanted in "${only[@]}"; do
        found=
        for i in "${!names[@]}"; do [ "${names[$i]}" = "$wanted" ] && found=$i; done
        [ -n "$found" ] || die 2 "unknown slide $wanted; the manifest has ${names[*]}"
        selected+=("$found")
    done
fi

mkdir -p "$dest" 2>/dev/null || die 4 "--dest: cannot create $dest"
curl_errors=$(mktemp "${TMPDIR:-/tmp}/get_data.XXXXXX") || die 4 "cannot make a temporary file"
trap 'rm -f "$curl_errors"' EXIT

size_of() { wc -c < "$1" | tr -d ' '; }

# verify FILE SIZE SHA256: prints how it was verified; on a mismatch prints why and fails.
verify() {
    local actual
    if [ "$2" != - ]; then
        actual=$(size_of "$1")
        [ "$actual" = "$2" ] || { echo "size $actual bytes, expected $2"; return 1; }
    fi
    if [ "$3" = - ]; then
        if [ "$2" = - ]; then echo "complete transfer; could not verify a checksum (none published)"
        else echo "size checked; could not verify a checksum (none published)"; fi
        return 0
    fi
    actual=$("${sha256[@]}" "$1" | cut -d' ' -f1)
    [ "$actual" = "$3" ] || { echo "sha256 $actual, expected $3"; return 1; }
    echo "sha256 verified"
}

# fetch URL PARTIAL SIZE: brings PARTIAL up to the whole file. Returns 0 when done, 1 when the
# slide failed (message printed); exits 3 or 4 when no other slide could succeed either.
# Sets server_length to the last response's Content-Length ("" when the server sent none).
fetch() {
    local url=$1 partial=$2 size=$3 attempt=0 status code reason host=${1#*://} answer
    local progress=(--silent --show-error) errors=/dev/stderr
    host=${host%%/*}
    # On a terminal, curl's progress bar; otherwise its error goes into our one-line message.
    if [ -t 2 ]; then progress=(--progress-bar); else errors=$curl_errors; fi
    server_length=
    if [ -L "$partial" ]; then
        echo "get_data.sh: ${url##*/}: $partial is a symbolic link; a download is never written through one:" \
             "remove it and run again" >&2
        return 1
    fi
    while :; do
        if [ "$size" != - ] && [ -f "$partial" ] && [ "$(size_of "$partial")" -ge "$size" ]; then
            [ "$(size_of "$partial")" -eq "$size" ] && return 0
            rm -f "$partial"  # longer than the file: not a prefix of it
        fi
        # Without a Content-Length curl cannot tell a cut transfer from a whole one: remember it.
        answer=$(curl --fail --location "${progress[@]}" --connect-timeout 15 --speed-limit 1 --speed-time 60 \
                      --continue-at - --output "$partial" --write-out '%{http_code} %header{content-length}' \
                      "$url" 2>"$errors")
        status=$?
        code=${answer%% *} server_length=${answer#* }
        [ "$server_length" = "$answer" ] && server_length=
        reason=
        [ "$errors" = /dev/stderr ] || reason=$(sed -n 's/^curl: ([0-9]*) //p' "$errors" | tail -n 1)
        case $status in
            0) return 0 ;;
            6) die 3 "cannot reach $host: DNS lookup failed (no network?); $hint" ;;
            23) die 4 "cannot write $partial: disk full or no permission; free space and run again to resume" ;;
            33) rm -f "$partial"; echo "${url##*/}: the server cannot resume (no Range support); starting again" ;;
            22) case $code in
                    # Nothing after what we have: verify decides (a 416 proves no length of the slide).
                    416) server_length=; [ -f "$partial" ] && return 0 ;;
                    408|429|5??) ;;
                    *) echo "get_data.sh: ${url##*/}: HTTP $code from $url" >&2; return 1 ;;
                esac ;;
        esac
        [ -f "$partial" ] && [ ! -s "$partial" ] && rm -f "$partial"
        if [ "$attempt" -ge "$retries" ]; then
            case $status in
                7|28) die 3 "cannot reach $host (${reason:-curl exit $status}, $retries retries); $hint" ;;
                *) echo "get_data.sh: ${url##*/}: ${reason:-curl exit $status}, $retries retries; run again to resume" >&2
                   return 1 ;;
            esac
        fi
        attempt=$((attempt + 1))
        echo "${url##*/}: ${reason:-curl exit $status}; retry $attempt of $retries in $((2 ** (attempt - 1))) s" >&2
        sleep $((2 ** (attempt - 1)))
    done
}

# settle NAME PARTIAL FINAL SIZE SHA256 WHY REMOVED DONE: verify PARTIAL and rename it to FINAL, saying DONE;
# on a mismatch remove it and say "NAME: WHY<the mismatch>; REMOVED" on stderr, and fail.
settle() {
    local how
    if ! how=$(verify "$2" "$4" "$5"); then
        rm -f "$2"
        echo "get_data.sh: $1: $6$how; $7" >&2
        return 1
    fi
    mv -f "$2" "$3" || die 4 "cannot rename $2 to $3"
    echo "$1: $8, $how"
}

failed=()
for i in "${selected[@]}"; do
    name=${names[$i]} size=${sizes[$i]} sum=${sums[$i]}
    url=${urls[$i]}
    [ -n "$base_url" ] && url="${base_url%/}/$name"
    final="$dest/$name"
    partial="$final.partial"
    if [ -f "$final" ]; then
        if how=$(verify "$final" "$size" "$sum"); then
            echo "$name: already here, $how"
            continue
        fi
        again="downloading it again"
        [ -n "$from_dir" ] && again="copying it again from $from_dir"
        echo "$name: $final does not match the manifest ($how); $again"
    fi
    if [ -n "$from_dir" ]; then
        # A local copy: the source's own length stands in for an unpublished size (proves the copy whole).
        if [ ! -f "$from_dir/$name" ]; then
            echo "get_data.sh: $name: not in $from_dir; get it there first (or leave it out)" >&2
            failed+=("$name")
            continue
        fi
        if [ ! -r "$from_dir/$name" ]; then
            echo "get_data.sh: $name: cannot read $from_dir/$name (no permission)" >&2
            failed+=("$name")
            continue
        fi
        if [ -L "$partial" ]; then
            echo "get_data.sh: $name: $partial is a symbolic link; a slide is never written through one:" \
                 "remove it and run again" >&2
            failed+=("$name")
            continue
        fi
        if ! cp -- "$from_dir/$name" "$partial" 2>/dev/null; then
            rm -f "$partial"
            die 4 "cannot write $partial: disk full or no permission"
        fi
        [ "$size" = - ] && size=$(size_of "$from_dir/$name")
        settle "$name" "$partial" "$final" "$size" "$sum" "$from_dir/$name does not match the manifest: " \
               "the copy was removed" "copied from $from_dir" || failed+=("$name")
        continue
    fi
    if ! fetch "$url" "$partial" "$size"; then
        failed+=("$name")
        continue
    fi
    if [ "$size" = - ] && [ "$sum" = - ] && [ -z "$server_length" ]; then
        echo "get_data.sh: $name: the manifest gives neither its size nor its sha256 and the server sent no" \
             "Content-Length: a transfer cut short could not be told from a whole one; kept as $partial, not" \
             "taken as the slide (add its size or sha256 to the manifest to accept it)" >&2
        failed+=("$name")
        continue
    fi
    settle "$name" "$partial" "$final" "$size" "$sum" "" "the download was removed, run again to fetch it anew" \
           downloaded || failed+=("$name")
done

echo "$((${#selected[@]} - ${#failed[@]})) of ${#selected[@]} slides in $dest${failed[*]:+; failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ] || exit 1
