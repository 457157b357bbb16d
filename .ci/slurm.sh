#!/usr/bin/env bash
# Start a single-node SLURM on this machine, for the SLURM tier of the tests (tests/test_slurm.py).
# Needs root and Debian's packages; no systemd: munged, slurmctld and slurmd run as daemons.
# One partition `debug` (the default) holding this node with its real CPUs and memory;
# no accounting (the executor plugin then needs --slurm-status-command squeue: docs/cluster.md).
# Idempotent: a second call finds the daemons up and only waits for the node.
#   sudo .ci/slurm.sh            # then: sinfo; python -m pytest -v -m slurm -n 0
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo ".ci/slurm.sh: must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

host=$(hostname -s)
cpus=$(nproc --all)
# slurmd -C reports what the node really has; RealMemory slightly under the total so
# slurmd does not mark the node invalid when the kernel reserves a little.
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true

cat > "$conf_dir/slurm.conf.new" <<CONF
# Written by coclr's .ci/slurm.sh: one node, one partition, no accounting.
ClusterName=coclr-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Short waits so that tests of time limits and requeues take seconds, not minutes.
KillWait=30
MinJobAge=300
SchedulerParameters=defer_batch
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$conf_dir/slurm.conf.new" "$conf_dir/slurm.conf" 2>/dev/null; then
    mv "$conf_dir/slurm.conf.new" "$conf_dir/slurm.conf"
    changed=1
else
    rm "$conf_dir/slurm.conf.new"
    changed=0
fi

# munge: a key, then the daemon (it refuses a key readable by others).
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi

if [ "$changed" = 1 ]; then
    # A new configuration: restart what runs with the old one.
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill "$(cat "$pidfile")"
            sleep 1
        fi
    done
fi
if ! { [ -s /run/slurmctld.pid ] && kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; }; then
    /usr/sbin/slurmctld
fi
if ! { [ -s /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; }; then
    /usr/sbin/slurmd
fi

for _ in $(seq 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
sinfo -N -o "%N %P %t %c %m"
case "$state" in
    idle|mix|alloc) echo "SLURM is up: node $host, $cpus CPUs, $mem_mb MB, partition debug" ;;
    *) echo ".ci/slurm.sh: the node did not become idle (state '$state'); see /var/log/slurm/" >&2; exit 1 ;;
esac
