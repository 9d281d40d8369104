#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the default node
# (rabbit@<host> on 5672), for the cross-machine fault scenario and for trying
# a cluster without three machines:
#
#   scripts/rabbitmq-cluster.sh start    # nodes ob1, ob2, ob3 on 5681, 5682, 5683; joined
#   scripts/rabbitmq-cluster.sh status   # the cluster as ob1 sees it
#   scripts/rabbitmq-cluster.sh kill N   # kill -9 of node obN (its Erlang VM)
#   scripts/rabbitmq-cluster.sh revive N # start obN again (it rejoins)
#   scripts/rabbitmq-cluster.sh stop     # stop and forget all three
#
# Each node has its own name (obN@localhost), AMQP port (568N), distribution
# port (2568N) and data folder ($CLUSTER_DIR/obN, default /tmp/orderbus-rabbit).
# ob2 and ob3 join ob1 (rabbitmqctl join_cluster); orderbus declares quorum
# queues, replicated on all three. Clients list every node:
#   ORDERBUS_BROKER_URL="amqp://guest:guest@localhost:5681//;amqp://guest:guest@localhost:5682//;amqp://guest:guest@localhost:5683//"
# (guest may connect from localhost only, which this is).
set -euo pipefail

DIR=${CLUSTER_DIR:-/tmp/orderbus-rabbit}
NODES=(1 2 3)

node() { echo "ob$1@localhost"; }

env_of() {
  local n=$1
  echo RABBITMQ_NODENAME="$(node "$n")" RABBITMQ_NODE_PORT=$((5680 + n)) \
    RABBITMQ_DIST_PORT=$((25680 + n)) RABBITMQ_MNESIA_BASE="$DIR/ob$n/mnesia" \
    RABBITMQ_LOG_BASE="$DIR/ob$n/log" RABBITMQ_PID_FILE="$DIR/ob$n/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/ob$n/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$DIR/ob$n/rabbitmq"
}

ctl() { local n=$1; shift; rabbitmqctl -n "$(node "$n")" "$@"; }

start_node() {
  local n=$1
  mkdir -p "$DIR/ob$n/mnesia" "$DIR/ob$n/log"
  [ -f "$DIR/ob$n/enabled_plugins" ] || echo "[]." > "$DIR/ob$n/enabled_plugins"
  # no management listener: it would want port 15672 on every node
  printf 'listeners.tcp.default = %s\n' $((5680 + n)) \
    > "$DIR/ob$n/rabbitmq.conf"
  chown -R rabbitmq:rabbitmq "$DIR" 2>/dev/null || true
  env $(env_of "$n") rabbitmq-server -detached
  # -detached returns before the node is known to epmd: wait for it, then for its boot
  for _ in $(seq 1 120); do ctl "$n" ping >/dev/null 2>&1 && break; sleep 1; done
  ctl "$n" await_startup --timeout 120 >/dev/null
}

case "${1:-}" in
  start)
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in 2 3; do
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(node 1)" >/dev/null
      ctl "$n" start_app >/dev/null
    done
    ctl 1 cluster_status | sed -n '1,12p'
    ;;
  status) ctl 1 cluster_status ;;
  kill)
    pid=$(ctl "$2" eval 'os:getpid().' | tr -d '"')
    kill -9 "$pid"
    echo "killed $(node "$2") (pid $pid)"
    ;;
  revive) start_node "$2"; echo "$(node "$2") is up" ;;
  stop)
    for n in "${NODES[@]}"; do ctl "$n" stop >/dev/null 2>&1 || true; done
    rm -rf "$DIR"
    ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
