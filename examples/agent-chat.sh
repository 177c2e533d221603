#!/bin/bash
# agent-chat.sh - talk to other agents from inside a Nexus task.
#
# Every agent an employee starts has a message channel on fd 3
# ($NEXUS_MSG_FD); this wraps its line protocol (proto/PROTOCOL.md,
# "Agent messages"). Recipients: employee:NAME, dept:NAME (any one member
# running an agent), all:NAME (every member running one).
#
#   agent-chat.sh send dept:qa "the build is ready"     -> ok, or error CAUSE
#   agent-chat.sh ask employee:eng-ada "which port?"    -> the answer, or error CAUSE
#   agent-chat.sh publish builds "build 42 is green"    -> ok (event agent.builds)
#   agent-chat.sh answer QID "port 8080"                -> answers question QID
#   agent-chat.sh listen [SECONDS]                      -> prints what arrives:
#       msg FROM TEXT | question QID FROM TEXT
# Exit status: 0 ok, 1 the CEO refused (the cause is printed), 2 usage.
set -u
fd=${NEXUS_MSG_FD:-3}
ref="r$$"
usage() { echo "usage: agent-chat.sh send|ask|publish TO TEXT | answer QID TEXT | listen [S]" >&2; exit 2; }

# Waits for the line that answers our reference; prints other lines (a
# message that arrived meanwhile) on stderr so they are not lost.
wait_for() {
    while IFS= read -r line <&"$fd"; do
        set -- $line
        if [ "${2:-}" = "$ref" ]; then
            case "$1" in
                ok) echo ok; exit 0 ;;
                reply) shift 2; echo "$*"; exit 0 ;;
                *) shift 2; echo "error: $*" >&2; exit 1 ;;
            esac
        fi
        echo "$line" >&2
    done
    echo "error: the message channel closed" >&2
    exit 1
}

[ $# -ge 1 ] || usage
case "$1" in
    send|ask|publish)
        [ $# -eq 3 ] || usage
        printf '%s %s %s %s\n' "$1" "$ref" "$2" "$3" >&"$fd"
        wait_for ;;
    answer)
        [ $# -eq 3 ] || usage
        printf 'answer %s %s\n' "$2" "$3" >&"$fd" ;;
    listen)
        secs=${2:-10}
        end=$(( $(date +%s) + secs ))
        while [ "$(date +%s)" -lt "$end" ]; do
            if IFS= read -r -t 1 line <&"$fd" 2>/dev/null; then echo "$line"; fi
        done ;;
    *) usage ;;
esac
