#!/usr/bin/env bash
# Downloads a registered data set into DATA_ROOT/NAME and verifies it.
#
#   datasets/download.sh [--dry-run] NAME [DATA_ROOT]
#   datasets/download.sh --list
#
# DATA_ROOT defaults to $FAISS_GMM_DATA_ROOT, else ~/.cache/faiss_gmm/datasets
# (the same rule as faiss_gmm::datasets::default_data_root()). The list of
# data sets, URLs, sizes and checksums is datasets/registry.tsv, the file the
# C++ registry embeds. Downloads resume (curl -C - for whole files; a manual
# offset for HTTP range prefixes), show a progress bar, and are idempotent: a
# file that is present with the registered size (and SHA-256, where one is
# known) is not fetched again. Prefixes of big-ann-benchmarks .fbin/.u8bin
# files are fetched with an HTTP Range and get their row count rewritten.
# --dry-run prints the plan and touches nothing.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# FAISS_GMM_REGISTRY_TSV points at another registry (a mirror, private sets).
registry="${FAISS_GMM_REGISTRY_TSV:-$script_dir/registry.tsv}"

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "download.sh: $*" >&2
    exit 1
}

log() {
    echo "[download.sh] $*"
}

known_names() {
    awk -F'\t' '$1 == "dataset" { printf "%s%s", sep, $2; sep = " " }' "$registry"
}

dry_run=0
list=0
args=()
while (($#)); do
    case "$1" in
        -n | --dry-run) dry_run=1 ;;
        --list) list=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "download.sh: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
        *) args+=("$1") ;;
    esac
    shift
done

[[ -r "$registry" ]] || die "cannot read the registry $registry"

if ((list)); then
    awk -F'\t' '$1 == "dataset" { printf "%-24s %s\n", $2, $7 }' "$registry"
    exit 0
fi

if ((${#args[@]} < 1 || ${#args[@]} > 2)); then
    usage >&2
    exit 2
fi
name="${args[0]}"
data_root="${args[1]:-${FAISS_GMM_DATA_ROOT:-$HOME/.cache/faiss_gmm/datasets}}"

dataset_line=$(awk -F'\t' -v n="$name" '$1 == "dataset" && $2 == n' "$registry")
if [[ -z "$dataset_line" ]]; then
    echo "download.sh: unknown dataset '$name'; known: $(known_names)" >&2
    exit 2
fi
IFS=$'\t' read -r _ _ format n_base n_query dim description <<<"$dataset_line"
mapfile -t file_lines < <(awk -F'\t' -v n="$name" '$1 == "file" && $2 == n' "$registry")
dir="$data_root/$name"
built_by=$(printf '%s\n' "${file_lines[@]}" | awk -F'\t' '$4 ~ /^build:/ { sub(/^build:/, "", $4); print $4; exit }')
if [[ -n "$built_by" ]]; then
    log "$name is made on this machine, not downloaded: run $built_by --data-root $data_root"
    log "(built with the project; bash scripts/eval.sh builds and runs it)"
    ((dry_run)) && exit 0
    exit 1
fi

log "$name: $description"
log "format $format, $n_base base x $dim, $n_query queries -> $dir"
((dry_run)) && log "dry run: nothing is downloaded or written"

if ! ((dry_run)); then
    for tool in curl od dd truncate; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
    mkdir -p "$dir"
fi

file_size() {
    stat -c %s "$1"
}

# complete PATH BYTES SHA256: true when PATH is present and matches.
complete() {
    local path="$1" bytes="$2" sha="$3"
    [[ -f "$path" ]] || return 1
    if [[ "$bytes" != "-1" && "$(file_size "$path")" != "$bytes" ]]; then
        return 1
    fi
    if [[ "$sha" != "-" ]]; then
        [[ "$(sha256sum "$path" | cut -d' ' -f1)" == "$sha" ]] || return 1
    fi
    return 0
}

# verify PATH BYTES SHA256: like complete, but says what is wrong and fails.
verify() {
    local path="$1" bytes="$2" sha="$3" size
    [[ -f "$path" ]] || die "$path: missing after download"
    size=$(file_size "$path")
    if [[ "$bytes" != "-1" && "$size" != "$bytes" ]]; then
        die "$path: $size bytes, expected $bytes (delete it and run again)"
    fi
    if [[ "$sha" != "-" ]]; then
        log "checking SHA-256 of $path"
        local actual
        actual=$(sha256sum "$path" | cut -d' ' -f1)
        [[ "$actual" == "$sha" ]] ||
            die "$path: SHA-256 $actual, expected $sha (delete it and run again)"
    fi
    if [[ "$path" == *.hdf5 ]]; then
        [[ "$(od -An -c -N 4 "$path" | tr -d ' ')" == "211HDF" ]] ||
            die "$path: not an HDF5 file (no HDF5 signature at byte 0)"
    fi
    if [[ "$sha" != "-" ]]; then
        log "ok: $path ($size bytes, SHA-256 matches)"
    else
        log "ok: $path ($size bytes; no published SHA-256 to check)"
    fi
}

# fetch_whole URL DEST BYTES: resumable download of a whole file.
fetch_whole() {
    local url="$1" dest="$2" bytes="$3" part="$2.part"
    if ((dry_run)); then
        local size_text="$bytes bytes"
        [[ "$bytes" == "-1" ]] && size_text="size not registered"
        log "would fetch $url -> $dest ($size_text; resumes $part)"
        return
    fi
    mkdir -p "$(dirname "$dest")"
    if [[ "$bytes" != "-1" && -f "$part" && "$(file_size "$part")" == "$bytes" ]]; then
        log "already fully fetched: $part"
    else
        log "fetching $url"
        curl --fail --location --retry 5 --retry-delay 10 --continue-at - \
            --progress-bar --output "$part" "$url" ||
            die "download of $url failed (run again to resume)"
    fi
    mv -f "$part" "$dest"
}

# write_u32_le FILE OFFSET VALUE: overwrite 4 bytes in place.
write_u32_le() {
    local file="$1" offset="$2" value="$3" bytes
    bytes=$(printf '\\%03o\\%03o\\%03o\\%03o' $((value & 255)) $(((value >> 8) & 255)) \
        $(((value >> 16) & 255)) $(((value >> 24) & 255)))
    # shellcheck disable=SC2059 # the format is the escaped bytes
    printf "$bytes" | dd of="$file" bs=1 seek="$offset" count=4 conv=notrunc status=none
}

# fetch_prefix URL DEST RANGE BYTES: the first bytes of a big-ann-benchmarks
# .fbin/.u8bin/.i8bin file, with the header's row count set to n_base.
fetch_prefix() {
    local url="$1" dest="$2" range="$3" bytes="$4" part="$2.part"
    local first="${range%-*}" last="${range#*-}"
    local total=$((last - first + 1))
    local esize
    case "$dest" in
        *.fbin) esize=4 ;;
        *.u8bin | *.i8bin) esize=1 ;;
        *) die "$dest: a range prefix must be .fbin, .u8bin or .i8bin" ;;
    esac
    ((first == 0)) || die "$dest: a prefix range must start at byte 0 (the header)"
    ((total == 8 + n_base * dim * esize)) ||
        die "$dest: range $range holds $total bytes, $n_base rows of $dim x $esize bytes need $((8 + n_base * dim * esize))"
    if ((dry_run)); then
        log "would fetch bytes $range of $url -> $dest (resumes $part)"
        log "would rewrite the header row count of $dest to $n_base (dimension $dim)"
        return
    fi
    mkdir -p "$(dirname "$dest")"
    local have attempt status
    for attempt in 1 2 3 4 5 6; do
        have=0
        [[ -f "$part" ]] && have=$(file_size "$part")
        ((have <= total)) || die "$part: $have bytes, more than the $total requested; delete it"
        ((have < total)) || break
        log "fetching bytes $((first + have))-$last of $url (attempt $attempt)"
        # head guards against a server that ignores Range and sends more.
        curl --fail --location --progress-bar --range "$((first + have))-$last" \
            --dump-header "$part.headers" "$url" | head -c $((total - have)) >>"$part" || true
        status=$(awk '/^HTTP/ { code = $2 } END { print code }' "$part.headers" 2>/dev/null || true)
        rm -f "$part.headers"
        if [[ "$status" != "206" ]]; then
            # Anything but Partial Content is not the bytes we asked for.
            truncate -s "$have" "$part"
            [[ "$status" == "200" ]] && die "$url ignores HTTP Range requests (status 200)"
            log "no partial content (HTTP status '${status:-none}'), retrying in 10 s"
            sleep 10
        fi
    done
    have=$(file_size "$part")
    ((have == total)) || die "$part: $have of $total bytes after retries (run again to resume)"
    local header n_file d_file
    header=$(od -An -t u4 -N 8 "$part")
    read -r n_file d_file <<<"$header"
    ((d_file == dim)) || die "$part: header dimension $d_file, expected $dim"
    ((n_file >= n_base)) || die "$part: header row count $n_file < $n_base"
    write_u32_le "$part" 0 "$n_base"
    header=$(od -An -t u4 -N 8 "$part")
    read -r n_file d_file <<<"$header"
    ((n_file == n_base && d_file == dim)) || die "$part: header rewrite failed ($n_file x $d_file)"
    log "header of $dest set to $n_base rows x $dim"
    mv -f "$part" "$dest"
}

# Archive members (URL "-") come with the entry's archive line.
members=()
for line in "${file_lines[@]}"; do
    IFS=$'\t' read -r _ _ role url local_name bytes sha range <<<"$line"
    [[ "$url" == "-" ]] && members+=("$line")
done

for line in "${file_lines[@]}"; do
    IFS=$'\t' read -r _ _ role url local_name bytes sha range <<<"$line"
    [[ "$url" == "-" ]] && continue
    dest="$dir/$local_name"
    if [[ "$role" == "archive" ]]; then
        all_present=1
        for member in "${members[@]}"; do
            IFS=$'\t' read -r _ _ _ _ m_name m_bytes m_sha _ <<<"$member"
            complete "$dir/$m_name" "$m_bytes" "$m_sha" || all_present=0
        done
        if ((all_present)); then
            log "present: the ${#members[@]} files of $local_name"
            continue
        fi
        complete "$dest" "$bytes" "$sha" || fetch_whole "$url" "$dest" "$bytes"
        if ((dry_run)); then
            log "would extract $dest into $dir, verify its ${#members[@]} files, delete $dest"
            continue
        fi
        verify "$dest" "$bytes" "$sha"
        log "extracting $dest"
        tar -xzf "$dest" -C "$dir"
        for member in "${members[@]}"; do
            IFS=$'\t' read -r _ _ _ _ m_name m_bytes m_sha _ <<<"$member"
            verify "$dir/$m_name" "$m_bytes" "$m_sha"
        done
        rm -f "$dest"
        continue
    fi
    if complete "$dest" "$bytes" "$sha"; then
        log "present: $dest"
        continue
    fi
    if [[ "$range" != "-" ]]; then
        fetch_prefix "$url" "$dest" "$range" "$bytes"
    else
        fetch_whole "$url" "$dest" "$bytes"
    fi
    ((dry_run)) || verify "$dest" "$bytes" "$sha"
done

if [[ "$format" == "bin" ]] && ! grep -q $'\tgroundtruth\t' <<<"$(printf '%s\n' "${file_lines[@]}")"; then
    log "no published ground truth for this prefix: load_dataset computes it on first use and caches it in $dir"
fi
log "done: $dir"
