# bash completion for interlinkctl(8). Installed as
# /usr/share/bash-completion/completions/interlinkctl.

_interlinkctl_sock() {
    local i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        if [[ ${COMP_WORDS[i]} == --socket ]]; then
            printf -- '--socket\n%s\n' "${COMP_WORDS[i + 1]}"
            return
        fi
    done
}

# Names from the running daemon (links or neighbors), when it answers.
_interlinkctl_names() {
    local what=$1 sock
    mapfile -t sock < <(_interlinkctl_sock)
    interlinkctl "${sock[@]}" show "$what" 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_interlinkctl() {
    local cur prev words cword
    _init_completion || return
    local i cmd=() 
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --socket | --config | --underlay | --peer | --peer-asn | --expires | --cipher-suite | \
                --interface | --import | --ipv6 | --name) ((i++)) ;;
            --json) ;;
            *) cmd+=("${words[i]}") ;;
        esac
    done
    case $prev in
        --socket | --config) _filedir; return ;;
        --cipher-suite)
            COMPREPLY=($(compgen -W 'gcm-aes-128 gcm-aes-256 gcm-aes-xpn-128 gcm-aes-xpn-256' -- "$cur"))
            return
            ;;
        --ipv6) COMPREPLY=($(compgen -W 'auto' -- "$cur")); return ;;
        --underlay | --peer | --peer-asn | --expires | --interface | --import | --name) return ;;
    esac
    case ${#cmd[@]} in
        0)
            COMPREPLY=($(compgen -W 'status show reload neighbor link --socket --config --json' -- "$cur"))
            ;;
        1)
            case ${cmd[0]} in
                show) COMPREPLY=($(compgen -W 'links neighbors routes fib bfd flows' -- "$cur")) ;;
                neighbor) COMPREPLY=($(compgen -W "$(_interlinkctl_names neighbors)" -- "$cur")) ;;
                link) COMPREPLY=($(compgen -W "offer accept remove $(_interlinkctl_names links)" -- "$cur")) ;;
            esac
            ;;
        2)
            case ${cmd[0]} in
                neighbor) COMPREPLY=($(compgen -W 'reset shutdown enable' -- "$cur")) ;;
                link)
                    case ${cmd[1]} in
                        offer | accept) ;;
                        remove) COMPREPLY=($(compgen -W "$(_interlinkctl_names links)" -- "$cur")) ;;
                        *) COMPREPLY=($(compgen -W 'rekey replace-cak' -- "$cur")) ;;
                    esac
                    ;;
                show) [[ ${cmd[1]} == flows ]] && COMPREPLY=($(compgen -W '--top' -- "$cur")) ;;
            esac
            ;;
        *)
            case "${cmd[0]} ${cmd[1]}" in
                "link offer") COMPREPLY=($(compgen -W '--underlay --peer --peer-asn --expires --cipher-suite --interface --import --ipv6' -- "$cur")) ;;
                "link accept") COMPREPLY=($(compgen -W '--name --interface' -- "$cur")) ;;
            esac
            ;;
    esac
}
complete -F _interlinkctl interlinkctl
