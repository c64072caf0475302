"""The smallest settings that serve the Channels tutorial's chat over channels_redis."""

import os

SECRET_KEY = "switchboard-interop-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["daphne", "channels", "chat"]
ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
DATABASES = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

_FLAVOUR = os.environ.get("CHANNELS_REDIS_FLAVOUR", "core")
_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
_KEYS = [k for k in os.environ.get("CHANNELS_REDIS_SYMMETRIC_ENCRYPTION_KEYS", "").split(",") if k]

_CONFIG = {
    # One or more URLs, comma-separated, in order (channels_redis shards over them).
    "hosts": [
        {
            "address": url,
            # redis-py 8's default 5 s socket timeout races the core layer's 5 s blocking pop:
            # idle members would be closed with 1011 after ~5 s (channels_redis #422).
            "socket_timeout": 30,
        }
        for url in os.environ.get("CHANNELS_REDIS_URL", "redis://127.0.0.1:6379/0").split(",")
    ],
    "prefix": os.environ.get("CHANNELS_REDIS_PREFIX", "asgi"),
}
if _KEYS:
    _CONFIG["symmetric_encryption_keys"] = _KEYS

CHANNEL_LAYERS = {"default": {"BACKEND": _BACKENDS[_FLAVOUR], "CONFIG": _CONFIG}}
