#!/usr/bin/env bash
# local-slurm.sh - a real single-node SLURM cluster on this Debian 12 host, to try (and test) the
# kcircuits SLURM profile without a cluster: munged, mariadbd + slurmdbd (sacct, which the snakemake
# SLURM plugin polls), slurmctld and slurmd, started by hand (no systemd), bound to loopback.
# Installs the Debian packages when missing (apt-get; root). Used by tests/test_slurm.py.
#
# Usage:  sudo scripts/local-slurm.sh start|stop|status      (default: start; start is idempotent)
#         sudo scripts/local-slurm.sh stop --purge-state     also forget jobs (ids restart at 1)
# Then:   snakemake --profile profiles/slurm --configfile tests/config/smoke.yaml
#
# Environment knobs (all optional):
#   LOCAL_SLURM_ACCOUNTING=slurmdbd|none  default slurmdbd. "slurmdbd" installs MariaDB +
#                                 slurmdbd so that `sacct` works (the snakemake slurm plugin
#                                 polls with sacct by default). "none" is lighter, but then
#                                 snakemake needs `--slurm-status-command squeue`.
#   LOCAL_SLURM_PARTITION=debug   name of the single (Default=YES) partition
#   LOCAL_SLURM_CLUSTER=localcluster
#   LOCAL_SLURM_FAKE_GPUS=0       >0: advertise N fake GPUs (Gres=gpu:fake:N) so that jobs with
#                                 --gpus/--gres=gpu can be scheduled (no real GPU behind them).
#   LOCAL_SLURM_DB_PASS=slurmdbpass  MariaDB password of the 'slurm' DB user (socket only).
#   LOCAL_SLURM_NO_INSTALL=1      never call apt-get (fail if packages are missing).
#   LOCAL_SLURM_WAIT=60           seconds to wait for the node to become idle.
# Daemons are stopped by their pidfiles (never by name). Config in /etc/slurm, logs in /var/log/slurm.
set -euo pipefail

ACTION="${1:-start}"
APT_LOG="${LOCAL_SLURM_APT_LOG:-${TMPDIR:-/tmp}/local-slurm-apt.log}"
ACCOUNTING="${LOCAL_SLURM_ACCOUNTING:-slurmdbd}"
PARTITION="${LOCAL_SLURM_PARTITION:-debug}"
CLUSTER="${LOCAL_SLURM_CLUSTER:-localcluster}"
FAKE_GPUS="${LOCAL_SLURM_FAKE_GPUS:-0}"
DB_PASS="${LOCAL_SLURM_DB_PASS:-slurmdbpass}"
WAIT_S="${LOCAL_SLURM_WAIT:-60}"

ETC=/etc/slurm
LOG=/var/log/slurm
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
DBD_PID=/run/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MYSQL_RUN=/run/mysqld
MYSQL_PID=$MYSQL_RUN/mysqld.pid
MYSQL_SOCK=$MYSQL_RUN/mysqld.sock

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[local-slurm %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# ---------------------------------------------------------------- helpers
# pid_alive PIDFILE COMM : true if the pidfile names a live process whose comm is COMM
pid_alive() {
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$comm" ]
}

# stop_pidfile PIDFILE COMM : TERM the process named in PIDFILE (only if its comm matches), wait, KILL
stop_pidfile() {
  local f=$1 comm=$2 pid i
  if ! pid_alive "$f" "$comm"; then rm -f "$f"; return 0; fi
  pid=$(tr -dc '0-9' <"$f")
  log "stopping $comm (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then log "$comm did not exit, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$f"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local s=$1 what=$2 i; shift 2
  for i in $(seq 1 $((s * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out after ${s}s waiting for: $what"
}

do_stop() {
  if command -v squeue >/dev/null 2>&1 && pid_alive $CTLD_PID slurmctld; then
    local jobs; jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then log "cancelling jobs: $(echo $jobs)"; scancel $jobs 2>/dev/null || true; sleep 1; fi
  fi
  stop_pidfile $SLURMD_PID slurmd
  stop_pidfile $CTLD_PID slurmctld
  stop_pidfile $DBD_PID slurmdbd
  stop_pidfile $MYSQL_PID mariadbd
  stop_pidfile $MUNGE_PID munged
  log "all local-slurm daemons stopped"
}

do_status() {
  local p
  for p in "$MUNGE_PID munged" "$MYSQL_PID mariadbd" "$DBD_PID slurmdbd" "$CTLD_PID slurmctld" "$SLURMD_PID slurmd"; do
    set -- $p
    if pid_alive "$1" "$2"; then echo "$2: running (pid $(cat "$1"))"; else echo "$2: not running"; fi
  done
  if pid_alive $CTLD_PID slurmctld; then sinfo; fi
}

case "$ACTION" in
  stop)   do_stop
          if [ "${2:-}" = "--purge-state" ]; then rm -rf "${SPOOL_CTLD:?}"/* "${SPOOL_D:?}"/*; log "purged slurmctld/slurmd state"; fi
          exit 0 ;;
  status) do_status; exit 0 ;;
  start)  ;;
  *) die "unknown action '$ACTION' (start|stop|status)" ;;
esac

case "$ACCOUNTING" in slurmdbd|none) ;; *) die "LOCAL_SLURM_ACCOUNTING must be slurmdbd or none" ;; esac

# ---------------------------------------------------------------- 1. packages
PKGS=(munge slurm-client slurmctld slurmd)
[ "$ACCOUNTING" = slurmdbd ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${LOCAL_SLURM_NO_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]}"
  log "installing: ${missing[*]}"
  # keep maintainer scripts from starting daemons (we start them ourselves)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$APT_LOG" 2>&1; then
    apt-get update >>"$APT_LOG" 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1 \
      || { [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed, see "$APT_LOG""; }
  fi
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- 2. configuration
H=$(hostname -s)
# Address of this host's name: with NoInAddrAny/NoCtldInAddrAny the daemons bind to it
# (on Debian/most containers it is a loopback address: 127.0.0.1 or 127.0.1.1).
ADDR=$(getent ahostsv4 "$H" 2>/dev/null | awk 'NR==1{print $1}')
COMM_PARAMS="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
if [ -z "$ADDR" ]; then
  log "WARNING: '$H' does not resolve; using 127.0.0.1 and binding daemons to all addresses"
  ADDR=127.0.0.1; COMM_PARAMS="#CommunicationParameters=NoCtldInAddrAny,NoInAddrAny (hostname does not resolve)"
elif [[ $ADDR != 127.* ]]; then
  log "WARNING: '$H' resolves to non-loopback $ADDR; daemons will listen on $ADDR"
fi

mkdir -p $ETC $LOG $SPOOL_CTLD $SPOOL_D /run/munge
chown slurm:slurm $LOG $SPOOL_CTLD
chown munge:munge /run/munge; chmod 0755 /run/munge

# hardware as seen by slurmd (CPUs/Boards/Sockets/Cores/Threads), leave 5% memory headroom
HW=$(slurmd -C | head -1)
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$((REALMEM - REALMEM / 20))
NODELINE=$(sed -e "s/ RealMemory=[0-9]*/ RealMemory=$MEM/" <<<"$HW")

GRES_LINE=""; NODE_GRES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_LINE="GresTypes=gpu"
  NODE_GRES=" Gres=gpu:fake:$FAKE_GPUS"
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    f=/var/lib/slurm/fake-gpu$i
    [ -e "$f" ] || mknod -m 666 "$f" c 1 3 2>/dev/null || touch "$f"   # /dev/null clones
  done
  echo "NodeName=$H Name=gpu Type=fake File=/var/lib/slurm/fake-gpu[0-$((FAKE_GPUS - 1))]" >$ETC/gres.conf.new
else
  : >$ETC/gres.conf.new
fi

if [ "$ACCOUNTING" = slurmdbd ]; then
  ACCT_BLOCK="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ADDR
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none"
else
  ACCT_BLOCK="AccountingStorageType=accounting_storage/none
# sacct does not work without slurmdbd ('Slurm accounting storage is disabled');
# job completion records go to a text file, readable with 'sacct -c'
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log"
fi

cat >$ETC/slurm.conf.new <<EOF
# generated by local-slurm.sh - single-node test cluster, no cgroups, no systemd
ClusterName=$CLUSTER
SlurmctldHost=$H($ADDR)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$COMM_PARAMS
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without this a job that gives no --mem is allocated the whole node's memory and jobs serialize
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
# keep finished jobs visible to squeue for 5 min (plugin's squeue status mode needs >= 3x its poll delay)
MinJobAge=300
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$ACCT_BLOCK
MpiDefault=none
MailProg=/bin/true
$GRES_LINE
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
$NODELINE NodeAddr=$ADDR$NODE_GRES State=UNKNOWN
PartitionName=$PARTITION Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF

CONF_CHANGED=0
for f in slurm.conf gres.conf; do
  if ! cmp -s $ETC/$f.new $ETC/$f; then mv $ETC/$f.new $ETC/$f; CONF_CHANGED=1; else rm -f $ETC/$f.new; fi
done
chmod 644 $ETC/slurm.conf $ETC/gres.conf
if [ $CONF_CHANGED = 1 ] && { pid_alive $CTLD_PID slurmctld || pid_alive $SLURMD_PID slurmd; }; then
  log "configuration changed: restarting slurmctld/slurmd"
  stop_pidfile $SLURMD_PID slurmd
  stop_pidfile $CTLD_PID slurmctld
fi

# ---------------------------------------------------------------- 3. munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
if pid_alive $MUNGE_PID munged; then log "munged already running"
else
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 "munge credential round trip" bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- 4. accounting DB (optional)
if [ "$ACCOUNTING" = slurmdbd ]; then
  mkdir -p $MYSQL_RUN; chown mysql:mysql $MYSQL_RUN
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising MariaDB datadir"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  if pid_alive $MYSQL_PID mariadbd; then log "mariadbd already running"
  else
    log "starting mariadbd (unix socket only, --skip-networking)"
    touch $LOG/mariadb.log; chown mysql:mysql $LOG/mariadb.log
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=$MYSQL_SOCK --pid-file=$MYSQL_PID \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      --log-error=$LOG/mariadb.log </dev/null >/dev/null 2>&1 &
  fi
  wait_for 60 "mariadbd" mariadb-admin --socket=$MYSQL_SOCK ping
  mariadb --socket=$MYSQL_SOCK -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

  cat >$ETC/slurmdbd.conf.new <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=$ADDR
DbdPort=6819
CommunicationParameters=NoInAddrAny
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  if ! cmp -s $ETC/slurmdbd.conf.new $ETC/slurmdbd.conf; then
    mv $ETC/slurmdbd.conf.new $ETC/slurmdbd.conf
    pid_alive $DBD_PID slurmdbd && { log "slurmdbd.conf changed: restarting slurmdbd"; stop_pidfile $DBD_PID slurmdbd; }
  else rm -f $ETC/slurmdbd.conf.new; fi
  chown slurm:slurm $ETC/slurmdbd.conf; chmod 600 $ETC/slurmdbd.conf
  if pid_alive $DBD_PID slurmdbd; then log "slurmdbd already running"
  else log "starting slurmdbd"; (cd / && /usr/sbin/slurmdbd); fi
  wait_for 60 "slurmdbd on $ADDR:6819" sacctmgr -n -P list cluster
else
  # switching from slurmdbd to none: stop the accounting daemons we may have started earlier
  stop_pidfile $DBD_PID slurmdbd
  stop_pidfile $MYSQL_PID mariadbd
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
if pid_alive $CTLD_PID slurmctld; then log "slurmctld already running"
else log "starting slurmctld"; (cd / && /usr/sbin/slurmctld); fi
wait_for 30 "slurmctld" scontrol ping
if pid_alive $SLURMD_PID slurmd; then log "slurmd already running"
else log "starting slurmd"; (cd / && /usr/sbin/slurmd); fi

# ---------------------------------------------------------------- 6. wait until the node is idle
state=""
for i in $(seq 1 $((WAIT_S * 4))); do
  state=$(sinfo -h -n "$H" -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc) break ;;
    down*|drain*|drng*|inval*|fail*) scontrol update nodename="$H" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.25
done
case "$state" in idle|mix|alloc) ;; *) die "node $H not ready (state '$state'); see $LOG/slurmd.log, $LOG/slurmctld.log" ;; esac
log "node $H is $state"

# smoke tests
srun -N1 -n1 -t 1 true || die "srun smoke test failed"
if [ "$ACCOUNTING" = slurmdbd ]; then
  wait_for 30 "sacct" sacct -n -X -S now-1hours
fi
sinfo
log "cluster '$CLUSTER' ready: partition=$PARTITION accounting=$ACCOUNTING fake_gpus=$FAKE_GPUS addr=$ADDR"
