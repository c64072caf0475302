"""Plain Python talking to the chat through Django's channel layer, as a view or a Celery task.

    python inject.py send GROUP MESSAGE       group_send {"type": "chat.message", "message": MESSAGE}
    python inject.py direct GROUP MESSAGE     send the same to each channel in GROUP, one by one (core)
    python inject.py malformed GROUP          every malformed thing the tests throw at GROUP's members

Settings come from the environment, as for daphne (see README.md).
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

import msgpack  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from redis import Redis  # noqa: E402


def send(group, message):
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(group, {"type": "chat.message", "message": message})


def direct(group, message):
    """A direct send to each member, as code holding a consumer's channel_name does it."""
    layer = get_channel_layer()

    async def send_each():
        connection = layer.connection(layer.consistent_hash(group))
        members = [m.decode() for m in await connection.zrange(layer._group_key(group), 0, -1)]
        for member in members:
            await layer.send(member, {"type": "chat.message", "message": message})
        print(len(members))

    async_to_sync(send_each)()


def malformed(group):
    layer = get_channel_layer()
    group_send = async_to_sync(layer.group_send)
    # Well-formed msgpack, wrong for the chat: an unknown type, no type, wrong field types,
    # bytes, deep nesting, a huge text.
    for message in [
        {"type": "chat.unknown", "message": "?"},
        {"message": "no type"},
        {"type": "chat.message", "message": 5},
        {"type": "chat.message", "message": b"\xff\x00bytes"},
        {"type": "chat.message", "message": None, "user": ["a"]},
        {"type": "chat.message", "message": {"nested": [[[[[[[[[[1]]]]]]]]]]}},
        {"type": 7},
    ]:
        group_send(group, message)
    # Not channels_redis messages at all, written straight into Redis where the members read.
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    prefix = config["prefix"]
    redis = Redis.from_url(config["hosts"][0]["address"])  # one host: the tests' case
    garbage = [b"", b"\xc1", b"not msgpack", msgpack.packb([1, 2, 3]), b"\x81\xa4type" + b"\xff" * 40]
    if settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("pubsub.RedisPubSubChannelLayer"):
        for payload in garbage:
            redis.publish(f"{prefix}__group__{group}", payload)
    else:
        members = [m.decode() for m in redis.zrange(f"{prefix}:group:{group}", 0, -1)]
        for member in members:
            key = prefix + member[: member.index("!") + 1]
            for payload in garbage:
                redis.zadd(key, {os.urandom(12) + payload: time.time()})
            # Valid msgpack naming a channel that does not exist, and the right one as a number.
            body = msgpack.packb({"type": "chat.message", "message": "x", "__asgi_channel__": 5})
            redis.zadd(key, {os.urandom(12) + body: time.time()})


if __name__ == "__main__":
    action, group = sys.argv[1], sys.argv[2]
    if action == "send":
        send(group, sys.argv[3])
    elif action == "direct":
        direct(group, sys.argv[3])
    elif action == "malformed":
        malformed(group)
    else:
        sys.exit(f"unknown action {action!r}")
