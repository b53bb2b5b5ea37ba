#!/usr/bin/env bash
# Installs xsm as xapi's SR plugins: the binary and one <Name>SR link per driver in the plugin
# directory, the SR types in xapi.conf's sm-plugins (when /etc/xapi.conf exists), /var/lock/sm.
# `--uninstall` undoes exactly what an install did (recorded in <plugin dir>/.xsm-install).
#
# Usage: ./install.sh [--binary PATH] [--uninstall]
#   --binary PATH   install this xsm binary (default: build it with cargo build --release)
# Environment:
#   DESTDIR   staging root prefixed to every path (default: none)
#   PREFIX    plugin directory xapi scans (default: /opt/xensource/sm)
#   XAPI_CONF xapi's configuration file (default: /etc/xapi.conf)
set -euo pipefail

PREFIX=${PREFIX:-/opt/xensource/sm}
XAPI_CONF=${XAPI_CONF:-/etc/xapi.conf}
DESTDIR=${DESTDIR:-}
plugin_dir="$DESTDIR$PREFIX"
conf="$DESTDIR$XAPI_CONF"
lock_dir="$DESTDIR/var/lock/sm"
state="$plugin_dir/.xsm-install"
# xapi's built-in sm-plugins list, used when xapi.conf has no sm-plugins line of its own.
xapi_default_plugins="ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb"

binary=""
mode=do_install
while (($#)); do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --uninstall) mode=do_uninstall; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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

do_install() {
    if [[ -z $binary ]]; then
        say "building xsm (cargo build --release -p xsm)"
        (cd "$(dirname "$0")" && cargo build --release --locked -p xsm)
        binary="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")" && pwd)/target}/release/xsm"
    fi
    [[ -x $binary ]] || { echo "install.sh: no executable xsm at $binary" >&2; exit 1; }
    local prev_links prev_types prev_line prev_lock
    prev_links=$(read_state links); prev_types=$(read_state types)
    prev_line=$(read_state appended_line); prev_lock=$(read_state created_lock_dir)

    mkdirs "$plugin_dir"
    command install -m 0755 "$binary" "$plugin_dir/xsm.new"
    mv -f "$plugin_dir/xsm.new" "$plugin_dir/xsm"

    local links=() types=() plugin type
    while read -r plugin type; do
        [[ -n $plugin ]] || continue
        ln -sfn xsm "$plugin_dir/$plugin"
        links+=("$plugin"); types+=("$type")
        say "$PREFIX/$plugin -> xsm (type $type)"
    done < <("$plugin_dir/xsm" --list-plugins)
    ((${#links[@]})) || { echo "install.sh: the binary lists no plugins" >&2; exit 1; }

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

    local created_lock=${prev_lock:-no}
    if [[ ! -d $lock_dir ]]; then mkdirs "$lock_dir"; created_lock=yes; fi

    # Merge with a previous install's record, so uninstall still undoes everything.
    local all_added
    all_added=$(printf '%s\n' $prev_types "${added[@]}" | awk 'NF && !seen[$0]++' | xargs)
    {
        echo "links=${links[*]} $prev_links"
        echo "types=$all_added"
        echo "appended_line=$appended"
        echo "created_lock_dir=$created_lock"
        echo "created_dirs=${created_dirs[*]} $(read_state created_dirs)"
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
