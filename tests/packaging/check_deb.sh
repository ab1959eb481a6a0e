#!/usr/bin/env bash
# check_deb.sh <cpack|control|depends|files> [options]: builds (cpack) or inspects the edgeferry .deb.
# Registered by tests/packaging/CMakeLists.txt; every check prints what it found and exits non-zero
# with a message naming the file and the field on the first mismatch.
set -euo pipefail

step=${1:?usage: check_deb.sh <cpack|control|depends|files> [options]}
shift
build_dir="" deb_dir="" name="" version="" deb_arch="" readelf=readelf shlibs="" sysroot=""
triplet="" expect_systemd=0
while (($#)); do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --deb-dir) deb_dir=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --deb-arch) deb_arch=$2; shift 2 ;;
    --readelf) readelf=$2; shift 2 ;;
    --shlibs) shlibs=$2; shift 2 ;;
    --sysroot) sysroot=$2; shift 2 ;;
    --triplet) triplet=$2; shift 2 ;;
    --expect-systemd) expect_systemd=1; shift ;;
    *) echo "check_deb.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
finish() {
  if ((fails)); then
    echo "$step: $fails check(s) failed" >&2
    exit 1
  fi
  echo "$step: all checks passed"
}

deb="$deb_dir/${name}_${version}_${deb_arch}.deb"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# soname -> "package min-version" from the table cmake/packaging.cmake writes.
table_lookup() {
  awk -F'|' -v so="$1" '$1 == so { print $2, $3; exit }' "$shlibs"
}

# NEEDED sonames of an ELF file, one per line.
needed_of() {
  "$readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
}

case "$step" in
  cpack)
    [[ -n "$build_dir" ]] || { echo "cpack: --build-dir missing" >&2; exit 2; }
    rm -rf "$deb_dir"
    mkdir -p "$deb_dir"
    (cd "$build_dir" && cpack -G DEB -B "$deb_dir") >"$tmp/cpack.log" 2>&1 || {
      cat "$tmp/cpack.log" >&2
      fail "cpack -G DEB failed in $build_dir"
      finish
    }
    [[ -f "$deb" ]] || fail "cpack did not produce $deb (found: $(ls "$deb_dir"))"
    ((fails)) || ok "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"
    finish
    ;;

  control)
    [[ -f "$deb" ]] || { fail "$deb missing (packaging.cpack failed?)"; finish; }
    dpkg-deb -I "$deb" >"$tmp/info"
    field() { dpkg-deb -f "$deb" "$1"; }
    [[ "$(field Package)" == "$name" ]] || fail "Package is '$(field Package)', expected '$name'"
    [[ "$(field Version)" == "$version" ]] || fail "Version is '$(field Version)', expected '$version'"
    [[ "$(field Architecture)" == "$deb_arch" ]] ||
      fail "Architecture is '$(field Architecture)', expected '$deb_arch'"
    [[ -n "$(field Maintainer)" ]] || fail "Maintainer is empty"
    [[ -n "$(field Depends)" ]] || fail "Depends is empty"
    [[ "$(field Description)" == *Kafka* ]] || fail "Description does not say what the package does"
    ok "Package $(field Package) $(field Version) $(field Architecture); Depends: $(field Depends)"

    mkdir -p "$tmp/control"
    dpkg-deb -e "$deb" "$tmp/control"
    if ((expect_systemd)); then
      conffiles=$(cat "$tmp/control/conffiles" 2>/dev/null || true)
      [[ "$conffiles" == "/etc/edgeferry/edgeferry.json" ]] ||
        fail "conffiles is '$conffiles', expected exactly /etc/edgeferry/edgeferry.json"
    fi
    for s in postinst prerm postrm; do
      f="$tmp/control/$s"
      if [[ ! -f "$f" ]]; then
        fail "control script $s missing"
        continue
      fi
      [[ "$(stat -c %a "$f")" == 755 ]] || fail "control script $s has mode $(stat -c %a "$f"), expected 755"
      sh -n "$f" || fail "control script $s is not valid sh"
    done
    # Every systemctl call is guarded by the presence of a running systemd, every systemd-*
    # tool by its existence, so that installing into a chroot or container works.
    grep -q 'systemd-sysusers' "$tmp/control/postinst" || fail "postinst does not create the system user"
    grep -q 'systemd-tmpfiles --create' "$tmp/control/postinst" || fail "postinst does not run systemd-tmpfiles"
    grep -q 'daemon-reload' "$tmp/control/postinst" || fail "postinst does not reload systemd"
    if grep -n 'systemctl' "$tmp/control/postinst" "$tmp/control/prerm" "$tmp/control/postrm" |
        grep -v 'run/systemd/system' >/dev/null; then
      grep -q '\[ -d /run/systemd/system \]' "$tmp/control/postinst" || fail "postinst calls systemctl unguarded"
    fi
    # The scripts must succeed where systemd is absent: run postinst in an empty PATH-less shell
    # (no systemd tools found, /run/systemd/system checked on this machine only by -d).
    PATH=/nonexistent /bin/sh "$tmp/control/postinst" configure >/dev/null 2>&1 ||
      fail "postinst configure fails when no systemd tool is on PATH"
    ok "conffiles and maintainer scripts"
    finish
    ;;

  depends)
    [[ -f "$deb" ]] || { fail "$deb missing (packaging.cpack failed?)"; finish; }
    [[ -f "$shlibs" ]] || { fail "soname table $shlibs missing"; finish; }
    dpkg-deb -x "$deb" "$tmp/root"
    bin="$tmp/root/usr/bin/$name"
    [[ -f "$bin" ]] || { fail "/usr/bin/$name not in the package"; finish; }
    depends=$(dpkg-deb -f "$deb" Depends)
    # "pkg (>= v), pkg2 (>= v2)" -> "pkg v" lines
    dep_lines=$(tr ',' '\n' <<<"$depends" | sed -E 's/^ *([^ (]+) *(\(>= *([^)]+)\))?.*/\1 \3/')
    declare -A needed_pkgs=()
    mapfile -t needed < <(needed_of "$bin")
    ((${#needed[@]})) || fail "readelf found no NEEDED entry in $bin"
    for so in "${needed[@]}"; do
      entry=$(table_lookup "$so")
      if [[ -z "$entry" ]]; then
        fail "$bin needs $so, which the soname table does not know"
        continue
      fi
      read -r pkg minver <<<"$entry"
      needed_pkgs[$pkg]=1
      # 1. Depends covers the library.
      grep -qx "$pkg $minver" <<<"$dep_lines" || fail "Depends lacks '$pkg (>= $minver)' for $so (Depends: $depends)"
      # 2. The table is right: the package named really ships this soname for this architecture,
      #    and the version we built against satisfies the minimum.
      if [[ -n "$sysroot" && -f "$sysroot/.edgeferry-libs" ]]; then
        # Exact suffix match (sonames like libstdc++.so.6 are no regular expressions).
        owner=$(awk -v suffix="/$triplet/$so" \
          'substr($2, length($2) - length(suffix) + 1) == suffix { print $1; exit }' "$sysroot/.edgeferry-libs")
        built=$(awk -v p="$owner" '$1 == p { print $2; exit }' "$sysroot/.edgeferry-packages")
        where="the $deb_arch sysroot"
      else
        owner=$(dpkg -S "*/${triplet:+$triplet/}$so" 2>/dev/null | head -1 | cut -d: -f1)
        built=$(dpkg-query -W -f='${Version}' "$owner" 2>/dev/null | head -1 || true)
        [[ -z "$built" ]] && built=$(dpkg-query -W -f='${Version}\n' "$owner:$deb_arch" 2>/dev/null | head -1 || true)
        where="this machine's dpkg database"
      fi
      if [[ -z "$owner" ]]; then
        fail "no package in $where ships $so"
      elif [[ "$owner" != "$pkg" ]]; then
        fail "$so is shipped by $owner according to $where, but the table says $pkg"
      elif ! dpkg --compare-versions "$built" ge "$minver"; then
        fail "$pkg: built against $built, which is older than the declared minimum $minver"
      else
        ok "$so -> $pkg (>= $minver); built against $built ($where)"
      fi
    done
    # 3. Nothing in Depends that the binary does not need.
    while read -r pkg _; do
      [[ -n "$pkg" ]] || continue
      [[ -n "${needed_pkgs[$pkg]:-}" ]] || fail "Depends lists $pkg, which no NEEDED entry of $bin maps to"
    done <<<"$dep_lines"
    finish
    ;;

  files)
    [[ -f "$deb" ]] || { fail "$deb missing (packaging.cpack failed?)"; finish; }
    dpkg-deb -c "$deb" >"$tmp/list"
    # Owners: everything root:root.
    if awk '$2 != "root/root" { found = 1; print "  " $0 } END { exit !found }' "$tmp/list" >&2; then
      fail "entries above are not owned by root/root"
    fi
    # Locations: only /usr and /etc (no /usr/local, /opt, /var: the state directory is made by
    # tmpfiles/StateDirectory at run time, so the package never owns the buffer).
    if awk '{ p = $6; sub(/\/$/, "", p) }
            !(p == "." || p ~ /^\.\/(usr|etc)(\/|$)/) || p ~ /^\.\/usr\/local(\/|$)/ { print "  " p; found = 1 }
            END { exit !found }' "$tmp/list" >&2; then
      fail "entries above are outside /usr and /etc"
    fi
    want=(./usr/bin/"$name")
    if ((expect_systemd)); then
      want+=(./etc/edgeferry/edgeferry.json ./usr/lib/systemd/system/edgeferry.service ./usr/lib/sysusers.d/edgeferry.conf
             ./usr/lib/tmpfiles.d/edgeferry.conf)
    fi
    for f in "${want[@]}"; do
      grep -q " $f\$" "$tmp/list" || fail "$f is not in the package"
    done

    dpkg-deb -x "$deb" "$tmp/root"
    bin="$tmp/root/usr/bin/$name"
    if [[ -f "$bin" ]]; then
      [[ "$(stat -c %a "$bin")" == 755 ]] || fail "/usr/bin/$name has mode $(stat -c %a "$bin"), expected 755"
      machine=$("$readelf" -h "$bin" | sed -n 's/^ *Machine: *//p')
      case "$deb_arch" in
        arm64) want_machine=AArch64 ;;
        armhf) want_machine=ARM ;;
        amd64) want_machine="Advanced Micro Devices X86-64" ;;
        *) want_machine="" ;;
      esac
      [[ -z "$want_machine" || "$machine" == "$want_machine" ]] ||
        fail "/usr/bin/$name is built for '$machine', expected '$want_machine' ($deb_arch)"
      if [[ "$deb_arch" == armhf ]]; then
        "$readelf" -h "$bin" | grep -q 'hard-float ABI' || fail "/usr/bin/$name is not hard-float (armhf)"
      fi
      interp=$("$readelf" -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
      case "$deb_arch" in
        arm64) [[ "$interp" == /lib/ld-linux-aarch64.so.1 ]] || fail "interpreter is '$interp'" ;;
        armhf) [[ "$interp" == /lib/ld-linux-armhf.so.3 ]] || fail "interpreter is '$interp'" ;;
      esac
      "$readelf" -S "$bin" | grep -q '\.symtab' && fail "/usr/bin/$name is not stripped"
      ok "/usr/bin/$name: $machine, mode 755, stripped, $(stat -c %s "$bin") bytes"
    fi
    conf="$tmp/root/etc/edgeferry/edgeferry.json"
    if [[ -f "$conf" ]]; then
      [[ "$(stat -c %a "$conf")" == 644 ]] || fail "/etc/edgeferry/edgeferry.json has mode $(stat -c %a "$conf"), expected 644"
      python3 -m json.tool "$conf" >/dev/null || fail "/etc/edgeferry/edgeferry.json is not valid JSON"
      ok "/etc/edgeferry/edgeferry.json: JSON, mode 644"
    fi
    if ((expect_systemd)); then
      unit="$tmp/root/usr/lib/systemd/system/edgeferry.service"
      if [[ -f "$unit" ]]; then
        exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
        [[ "$exec_start" == "/usr/bin/$name "* ]] || fail "ExecStart is '$exec_start', expected /usr/bin/$name ..."
        [[ "$exec_start" == *"/etc/edgeferry/edgeferry.json"* ]] || fail "ExecStart '$exec_start' does not use /etc/edgeferry/edgeferry.json"
        [[ "$(stat -c %a "$unit")" == 644 ]] || fail "edgeferry.service has mode $(stat -c %a "$unit")"
        ok "edgeferry.service: ExecStart=$exec_start"
      fi
      sysusers="$tmp/root/usr/lib/sysusers.d/edgeferry.conf"
      [[ -f "$sysusers" ]] && { grep -Eq '^u +edgeferry ' "$sysusers" || fail "sysusers.d entry does not create user edgeferry"; }
      tmpfiles="$tmp/root/usr/lib/tmpfiles.d/edgeferry.conf"
      [[ -f "$tmpfiles" ]] && { grep -Eq '^d +/var/lib/edgeferry ' "$tmpfiles" || fail "tmpfiles.d entry does not create /var/lib/edgeferry"; }
    fi
    echo "files in the package:"
    awk '{ print "  " $1, $6 }' "$tmp/list"
    finish
    ;;

  *)
    echo "check_deb.sh: unknown step $step" >&2
    exit 2
    ;;
esac
