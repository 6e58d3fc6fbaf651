"""The peer of tests/perf/queues.py: RabbitMQ quorum queues (Debian rabbitmq-server, a
3-node cluster on this machine) driven like dsync-bench's queue workloads: 4 producers
with publisher confirms (each publish waits for its confirm), and 4 producers plus 4
consumers (prefetch 16, manual ack) for the round trip; 64-byte and 1 KiB payloads over 1
and 16 queues. Needs python3-pika (Debian's /usr/bin/python3) and a running cluster:

    /usr/bin/python3 tests/perf/rabbitmq_queues.py --ports 5681,5691,5701 [--seconds 5]
"""
import argparse
import statistics
import threading
import time

import pika


def connect(port):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))


def declare(port, names):
    conn = connect(port)
    ch = conn.channel()
    for n in names:
        ch.queue_delete(queue=n)
        ch.queue_declare(queue=n, durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()


def producer(port, queue, payload, stop, latencies, errors):
    conn = connect(port)
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            ch.basic_publish(exchange="", routing_key=queue, body=payload, properties=props, mandatory=True)
            latencies.append((time.monotonic() - t0) * 1000)
        except Exception:  # a nack or a lost connection: counted, not retried
            errors.append(1)
    conn.close()


def consumer(port, queue, stop, consumed):
    conn = connect(port)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=16)
    count = [0]

    def on_message(channel, method, properties, body):
        channel.basic_ack(method.delivery_tag)
        count[0] += 1
    ch.basic_consume(queue=queue, on_message_callback=on_message, auto_ack=False)
    while not stop.is_set():
        conn.process_data_events(time_limit=0.2)
    consumed.append(count[0])
    conn.close()


def run(ports, payload_bytes, queues, roundtrip, seconds):
    names = [f"bench-q-{i}" for i in range(queues)]
    declare(ports[0], names)
    stop = threading.Event()
    latencies, errors, consumed = [], [], []
    payload = b"x" * payload_bytes
    threads = [threading.Thread(target=producer, args=(ports[i % len(ports)], names[i % queues], payload, stop,
                                                     latencies, errors)) for i in range(4)]
    if roundtrip:
        threads += [threading.Thread(target=consumer, args=(ports[(i + 1) % len(ports)], names[i % queues], stop,
                                                          consumed)) for i in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - start
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0  # noqa: E731
    return {"published_per_s": len(latencies) / elapsed, "consumed_per_s": sum(consumed) / elapsed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "errors": len(errors)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", default="5681,5691,5701")
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",")]
    print("| workload | payload | queues | published/s | consumed/s | publish p50 / p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for payload in (64, 1024):
        for queues in (1, 16):
            for roundtrip in (False, True):
                r = run(ports, payload, queues, roundtrip, a.seconds)
                print(f"| {'round trip' if roundtrip else 'enqueue'} | {payload} | {queues} | {r['published_per_s']:.0f} | "
                      f"{r['consumed_per_s']:.0f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
