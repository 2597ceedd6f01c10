#!/usr/bin/env python3
"""Subscribe to Candlecast's forecasts with pika (docs/asyncapi.yaml is the contract).

    pip install pika   # or: apt install python3-pika
    source .local/env  # CANDLECAST_AMQP_URL and the password file, from scripts/servers.sh
    python3 examples/python/subscribe_forecasts.py --pair xbtusd

Each forecast is acknowledged after it is handled, so none is lost if this program stops; one may come
twice, so handling is idempotent on (pair, interval, target_open_time, model_version). With --queue the
queue is durable and keeps forecasts while this program is down; without it the queue is temporary.

Each line printed is one forecast as JSON: the point forecast (predicted_close), its 80 % and 95 % ranges
(range_80, range_95: [lower, upper] in USD) and probability_up, P(close above last_close). The ranges and the
probability are optional fields of schema version 1: null for a model without calibration (and from an older
predictor), so read them with .get().
"""
import argparse
import json
import os
import sys
import urllib.parse

import pika

EXCHANGE = "candlecast.events"
MESSAGE_TYPE = "forecast.created"
SCHEMA_VERSION = 1


def amqp_parameters(url):
    parts = urllib.parse.urlparse(url)
    password = os.environ.get("CANDLECAST_AMQP_PASSWORD") or parts.password
    if not password and os.environ.get("CANDLECAST_AMQP_PASSWORD_FILE"):
        with open(os.environ["CANDLECAST_AMQP_PASSWORD_FILE"]) as secret:
            password = secret.read().strip()
    return pika.ConnectionParameters(
        host=parts.hostname or "127.0.0.1", port=parts.port or 5672,
        virtual_host=urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
        credentials=pika.PlainCredentials(parts.username or "guest", password or ""), heartbeat=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CANDLECAST_AMQP_URL", "amqp://candlecast@127.0.0.1:5672/"))
    parser.add_argument("--pair", default="*", help="pair token, lower case (xbtusd); * for every pair")
    parser.add_argument("--interval", default="*", help="interval token (1d); * for every interval")
    parser.add_argument("--queue", help="a durable queue of your own (default: a temporary one)")
    parser.add_argument("--count", type=int, help="stop after this many forecasts")
    args = parser.parse_args()

    connection = pika.BlockingConnection(amqp_parameters(args.url))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    if args.queue:
        queue = channel.queue_declare(args.queue, durable=True).method.queue
    else:
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, EXCHANGE, routing_key=f"forecast.created.{args.pair}.{args.interval}")
    channel.basic_qos(prefetch_count=16)
    print(f"listening on {queue}", file=sys.stderr, flush=True)

    received = 0

    def handle(channel, method, properties, body):
        nonlocal received
        version = (properties.headers or {}).get("schema_version")
        if properties.type != MESSAGE_TYPE or version != SCHEMA_VERSION:
            # Not a forecast this program understands: refuse it rather than guess.
            print(f"skipping {properties.type} v{version}", file=sys.stderr)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        forecast = json.loads(body)
        shown = {key: forecast[key] for key in
                 ("pair", "interval", "target_open_time", "predicted_close", "last_close", "model_name", "model_version")}
        ranges = {interval["level"]: [interval["lower"], interval["upper"]] for interval in forecast.get("intervals") or []}
        shown["range_80"] = ranges.get(0.8)
        shown["range_95"] = ranges.get(0.95)
        shown["probability_up"] = forecast.get("probability_up")
        print(json.dumps(shown), flush=True)
        channel.basic_ack(method.delivery_tag)
        received += 1
        if args.count and received >= args.count:
            channel.stop_consuming()

    channel.basic_consume(queue, handle)
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        pass
    connection.close()


if __name__ == "__main__":
    main()
