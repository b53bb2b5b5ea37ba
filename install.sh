#!/usr/bin/env bash
# Installs xsm as xapi's SR plugins: the binary and one <Name>SR link per driver in the plugin
# directory, the SR types in xapi.conf's sm-plugins (when /etc/xapi.conf exists), /var/lock/sm,
# and the systemd units of the persistent-reservation helper (xsm-pr-helper.socket/.service in
# $SYSTEMD_DIR, not enabled: `systemctl enable --now xsm-pr-helper.socket` starts serving QEMU).
# `--uninstall` undoes exactly what an install did (recorded in <plugin dir>/.xsm-install).
#
# It never overwrites a file it did not install: when a plugin name (or `xsm`) is already taken
# in the plugin directory, by sm's drivers or anything else, it says what it found and stops
# before changing anything. `--force` moves such files into <plugin dir>/.xsm-backup/ instead;
# `--uninstall` moves them back, unchanged.
#
# Usage: ./install.sh [--binary PATH] [--force] [--uninstall]
#   --binary PATH   install this xsm binary (default: build it with cargo build --release)
#   --force         move files in the way into .xsm-backup/ (restored by --uninstall)
# Environment:
#   DESTDIR   staging root prefixed to every path (default: none)
#   PREFIX    plugin directory xapi scans (default: /opt/xensource/sm)
#   XAPI_CONF xapi's configuration file (default: /etc/xapi.conf)
#   SYSTEMD_DIR where the units go (default: /etc/systemd/system)
set -euo pipefail

PREFIX=${PREFIX:-/opt/xensource/sm}
XAPI_CONF=${XAPI_CONF:-/etc/xapi.conf}
DESTDIR=${DESTDIR:-}
plugin_dir="$DESTDIR$PREFIX"
conf="$DESTDIR$XAPI_CONF"
lock_dir="$DESTDIR/var/lock/sm"
state="$plugin_dir/.xsm-install"
unit_dir="$DESTDIR${SYSTEMD_DIR:-/etc/systemd/system}"
units="xsm-pr-helper.socket xsm-pr-helper.service"
# The first line of every unit we write: how uninstall and a reinstall know a unit is ours.
unit_mark="# Installed by xsm's install.sh; removed by install.sh --uninstall."
backup_dir="$plugin_dir/.xsm-backup"
# xapi's built-in sm-plugins list, used when xapi.conf has no sm-plugins line of its own.
xapi_default_plugins="ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb"

binary=""
force=no
mode=do_install
while (($#)); do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --force) force=yes; shift ;;
        --uninstall) mode=do_uninstall; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }

# The active sm-plugins line's value, or nothing.
plugins_line() { [[ -f $conf ]] && grep -E '^[[:space:]]*sm-plugins[[:space:]]*=' "$conf" | tail -1 | sed -E 's/^[^=]*=[[:space:]]*//' || true; }

# Rewrites the active sm-plugins line to "$1".
set_plugins_line() {
    local tmp
    tmp=$(mktemp "$conf.XXXXXX")
    awk -v val="$1" '
        /^[[:space:]]*sm-plugins[[:space:]]*=/ { last = NR }
        { lines[NR] = $0 }
        END { for (i = 1; i <= NR; i++) print (i == last ? "sm-plugins=" val : lines[i]) }' "$conf" >"$tmp"
    chmod --reference="$conf" "$tmp" 2>/dev/null || true
    mv "$tmp" "$conf"
}

# mkdir -p that remembers (in $created_dirs) every directory it had to create, deepest last.
created_dirs=()
mkdirs() {
    local d=$1 missing=()
    while [[ -n $d && $d != / && ! -e $d ]]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
    mkdir -p "$1"
    created_dirs+=("${missing[@]}")
}

read_state() { [[ -f $state ]] && sed -n "s/^$1=//p" "$state" | tail -1 || true; }

# Whether <plugin dir>/$1 is ours: a plugin link to xsm, or xsm itself after a recorded install.
is_ours() {
    local f=$plugin_dir/$1
    if [[ $1 == xsm ]]; then [[ -f $state ]]; else [[ -L $f && $(readlink "$f") == xsm ]]; fi
}

# What <plugin dir>/$1 is, for the refusal message (type, target or size, owning package).
describe() {
    local f=$plugin_dir/$1 what owner=""
    if [[ -L $f ]]; then what="symbolic link to $(readlink "$f")"
    elif [[ -f $f ]]; then what="file of $(stat -c %s "$f") bytes"
    else what=$(stat -c %F "$f"); fi
    if command -v rpm >/dev/null; then owner=$(rpm -qf "$f" 2>/dev/null || true); fi
    if [[ -z $owner ]] && command -v dpkg >/dev/null; then owner=$(dpkg -S "$f" 2>/dev/null | cut -d: -f1 || true); fi
    echo "$PREFIX/$1: $what${owner:+, from package $owner}"
}

unit_is_ours() { [[ $(head -1 "$unit_dir/$1" 2>/dev/null) == "$unit_mark" ]]; }

# The pr-helper's socket and service units (socket activation; the daemon drops to
# CAP_SYS_RAWIO itself after start-up).
install_units() {
    mkdirs "$unit_dir"
    cat >"$unit_dir/xsm-pr-helper.socket.new" <<EOF
$unit_mark
[Unit]
Description=xsm persistent-reservation helper socket (QEMU pr-manager-helper protocol)

[Socket]
ListenStream=/run/xsm-pr-helper.sock
SocketMode=0600

[Install]
WantedBy=sockets.target
EOF
    cat >"$unit_dir/xsm-pr-helper.service.new" <<EOF
$unit_mark
[Unit]
Description=xsm persistent-reservation helper for QEMU (multipath-aware)
Requires=xsm-pr-helper.socket
After=multipathd.service

[Service]
Type=simple
ExecStart=$PREFIX/xsm pr-helper
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadWritePaths=/run
RestrictAddressFamilies=AF_UNIX
Restart=always
RestartSec=1

[Install]
Also=xsm-pr-helper.socket
EOF
    local u
    for u in $units; do
        mv -f "$unit_dir/$u.new" "$unit_dir/$u"
        say "${SYSTEMD_DIR:-/etc/systemd/system}/$u (not enabled)"
    done
    reload_systemd
}

reload_systemd() {
    if [[ -z $DESTDIR && -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl daemon-reload || true
    fi
}

do_install() {
    if [[ -z $binary ]]; then
        say "building xsm (cargo build --release -p xsm)"
        (cd "$(dirname "$0")" && cargo build --release --locked -p xsm)
        binary="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")" && pwd)/target}/release/xsm"
    fi
    [[ -x $binary ]] || { echo "install.sh: no executable xsm at $binary" >&2; exit 1; }
    local prev_links prev_types prev_line prev_lock prev_backups
    prev_links=$(read_state links); prev_types=$(read_state types)
    prev_line=$(read_state appended_line); prev_lock=$(read_state created_lock_dir)
    prev_backups=$(read_state backups)

    local plugins=() ptypes=() plugin type
    while read -r plugin type; do
        [[ -n $plugin ]] || continue
        plugins+=("$plugin"); ptypes+=("$type")
    done < <("$binary" --list-plugins)
    ((${#plugins[@]})) || { echo "install.sh: the binary lists no plugins" >&2; exit 1; }

    # Everything in the way is found before anything changes.
    local in_way=() name
    for name in xsm "${plugins[@]}"; do
        if [[ -e $plugin_dir/$name || -L $plugin_dir/$name ]] && ! is_ours "$name"; then in_way+=("$name"); fi
    done
    for name in $units; do
        if [[ -e $unit_dir/$name ]] && ! unit_is_ours "$name"; then
            echo "install.sh: $unit_dir/$name exists and is not ours; nothing was changed." >&2
            exit 1
        fi
    done
    if ((${#in_way[@]})); then
        for name in "${in_way[@]}"; do say "found $(describe "$name")"; done
        if [[ $force != yes ]]; then
            echo "install.sh: these names are taken by files this installer did not put there; nothing was changed." >&2
            echo "install.sh: --force moves them into $PREFIX/.xsm-backup/ and --uninstall puts them back." >&2
            exit 1
        fi
        for name in "${in_way[@]}"; do
            if [[ -e $backup_dir/$name || -L $backup_dir/$name ]]; then
                echo "install.sh: $PREFIX/.xsm-backup/$name exists already; nothing was changed." >&2
                exit 1
            fi
        done
        mkdirs "$backup_dir"
        for name in "${in_way[@]}"; do
            mv "$plugin_dir/$name" "$backup_dir/$name"
            say "moved $PREFIX/$name to $PREFIX/.xsm-backup/$name (--force)"
        done
    fi

    mkdirs "$plugin_dir"
    command install -m 0755 "$binary" "$plugin_dir/xsm.new"
    mv -f "$plugin_dir/xsm.new" "$plugin_dir/xsm"

    local links=() types=() i
    for i in "${!plugins[@]}"; do
        ln -sfn xsm "$plugin_dir/${plugins[$i]}"
        links+=("${plugins[$i]}"); types+=("${ptypes[$i]}")
        say "$PREFIX/${plugins[$i]} -> xsm (type ${ptypes[$i]})"
    done

    # Names an earlier install linked that this binary no longer serves (wave 1 took sm's FileSR,
    # EXTSR and LVMSR): our link goes; what was there before comes back from the backup, or, for
    # sm's own <Name>SR -> <Name>SR.py link (how the sm package ships them), is made again.
    local kept_backups=() stale
    for stale in $prev_links; do
        [[ " ${links[*]} " == *" $stale "* ]] && continue
        is_ours "$stale" || continue
        rm -f "$plugin_dir/$stale"
        if [[ " $prev_backups " == *" $stale "* && -e $backup_dir/$stale ]]; then
            mv "$backup_dir/$stale" "$plugin_dir/$stale"
            say "restored $PREFIX/$stale (no longer one of ours)"
        elif [[ -f $plugin_dir/$stale.py ]]; then
            ln -s "$stale.py" "$plugin_dir/$stale"
            say "$PREFIX/$stale -> $stale.py again (sm's link, taken by an earlier install)"
        else
            say "removed our old link $PREFIX/$stale"
        fi
    done
    for name in $prev_backups; do
        [[ -e $backup_dir/$name || -L $backup_dir/$name ]] && kept_backups+=("$name")
    done
    rmdir "$backup_dir" 2>/dev/null || true

    local added=() appended=${prev_line:-no}
    if [[ -f $conf ]]; then
        local current
        current=$(plugins_line)
        if [[ -z $current ]] && ! grep -qE '^[[:space:]]*sm-plugins[[:space:]]*=' "$conf"; then
            printf 'sm-plugins=%s\n' "$xapi_default_plugins" >>"$conf"
            appended=yes
            current=$xapi_default_plugins
        fi
        if [[ " $current " == *" * "* || $current == "*" ]]; then
            say "sm-plugins accepts every type (*)"
        else
            local t new=$current
            for t in "${types[@]}"; do
                if [[ " $new " != *" $t "* ]]; then new="$new $t"; added+=("$t"); fi
            done
            [[ $new == "$current" ]] || set_plugins_line "${new# }"
            say "sm-plugins in $XAPI_CONF: $(plugins_line)"
        fi
    else
        say "$XAPI_CONF not found: sm-plugins left alone"
    fi

    install_units

    local created_lock=${prev_lock:-no}
    if [[ ! -d $lock_dir ]]; then mkdirs "$lock_dir"; created_lock=yes; fi

    # Merge with a previous install's record, so uninstall still undoes everything.
    local all_added
    all_added=$(printf '%s\n' $prev_types "${added[@]}" | awk 'NF && !seen[$0]++' | xargs)
    {
        echo "links=${links[*]}"
        echo "types=$all_added"
        echo "appended_line=$appended"
        echo "created_lock_dir=$created_lock"
        echo "created_dirs=$(printf '%s\n' $(read_state created_dirs) "${created_dirs[@]}" | awk 'NF && !seen[$0]++' | xargs)"
        echo "backups=$(printf '%s\n' "${kept_backups[@]}" "${in_way[@]}" | awk 'NF && !seen[$0]++' | xargs)"
    } >"$state.new"
    mv -f "$state.new" "$state"
    say "installed $("$plugin_dir/xsm" --version) into $PREFIX"
}

do_uninstall() {
    [[ -f $state ]] || { say "nothing recorded in $state: nothing to undo"; return 0; }
    local links types appended created_lock l t
    links=$(read_state links); types=$(read_state types)
    appended=$(read_state appended_line); created_lock=$(read_state created_lock_dir)
    for l in $links; do
        if [[ -L $plugin_dir/$l && $(readlink "$plugin_dir/$l") == xsm ]]; then rm -f "$plugin_dir/$l"; fi
    done
    rm -f "$plugin_dir/xsm"
    local u
    for u in $units; do
        if unit_is_ours "$u"; then
            if [[ -z $DESTDIR ]] && command -v systemctl >/dev/null; then systemctl disable --now "$u" 2>/dev/null || true; fi
            rm -f "$unit_dir/$u"
        fi
    done
    reload_systemd
    local b
    for b in $(read_state backups); do
        if [[ -e $plugin_dir/$b || -L $plugin_dir/$b ]]; then
            say "kept $PREFIX/.xsm-backup/$b: $PREFIX/$b exists again"
        else
            mv "$backup_dir/$b" "$plugin_dir/$b"
            say "restored $PREFIX/$b"
        fi
    done
    rmdir "$backup_dir" 2>/dev/null || true
    if [[ -f $conf ]]; then
        if [[ $appended == yes ]]; then
            local tmp
            tmp=$(mktemp "$conf.XXXXXX")
            grep -vE '^[[:space:]]*sm-plugins[[:space:]]*=' "$conf" >"$tmp" || true
            chmod --reference="$conf" "$tmp" 2>/dev/null || true
            mv "$tmp" "$conf"
        elif [[ -n $types ]]; then
            local new=" $(plugins_line) "
            for t in $types; do new=${new// $t / }; done
            new=$(echo "$new" | xargs)
            set_plugins_line "$new"
        fi
    fi
    local dirs d
    dirs=$(read_state created_dirs)
    if [[ $created_lock == yes && -d $lock_dir ]]; then rmdir "$lock_dir" 2>/dev/null || say "kept $lock_dir (not empty)"; fi
    rm -f "$state"
    rmdir "$plugin_dir" 2>/dev/null || say "kept $plugin_dir (not empty)"
    # Directories the install created, deepest first; only while empty.
    for d in $(printf '%s\n' $dirs | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-); do
        rmdir "$d" 2>/dev/null || true
    done
    say "uninstalled from $PREFIX"
}

"$mode"
