"""How every client crmstream makes reaches Kafka and Redis: TLS, SASL and ACL credentials
from :class:`~crmstream.streams.settings.Settings`, in the form each client library takes.

crmstream speaks to Kafka through three libraries: Faust's worker (aiokafka inside, given
:func:`faust_credentials`), the dashboard's aiokafka consumers (:func:`aiokafka_options`)
and the command-line tools, publisher and health probes (kafka-python,
:func:`kafka_python_options`). All three get the same TLS context (:func:`ssl_context`:
CA verification, host-name check, client certificate for mTLS) and the same SASL user, so
one set of ``CRM_KAFKA_*`` variables configures them all. The settings themselves refuse
SASL over plaintext unless ``CRM_KAFKA_ALLOW_SASL_PLAINTEXT`` says otherwise.

Redis clients take a URL (:func:`redis_client_url`): ``CRM_REDIS_URL`` with the ACL user,
password and TLS files of the settings folded in as redis-py URL parameters, so every store
that is given a URL connects the same way.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from crmstream.streams.settings import Settings

#: The options of a Kafka client that connects without TLS or SASL.
PLAINTEXT: Mapping[str, Any] = {}


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context of the Kafka settings, ``None`` without TLS.

    It verifies the broker's certificate against ``CRM_KAFKA_SSL_CAFILE`` (the system's
    CAs when empty), checks the host name unless told not to, and presents the client
    certificate when one is configured (mTLS).

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> ssl_context(Settings()) is None
    True
    >>> context = ssl_context(Settings(kafka_security_protocol="SSL"))
    >>> context.verify_mode == ssl.CERT_REQUIRED, context.check_hostname
    (True, True)
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password.get_secret_value() or None
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile, password)
    return context


def _sasl(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return {}
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
    }


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of kafka-python's clients (``KafkaProducer``, ``KafkaConsumer``,
    ``KafkaAdminClient``) for the transport settings; empty for ``PLAINTEXT``.

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> kafka_python_options(Settings())
    {}
    >>> options = kafka_python_options(Settings(
    ...     kafka_security_protocol="SASL_SSL", kafka_sasl_username="crm",
    ...     kafka_sasl_password="secret", kafka_sasl_mechanism="SCRAM-SHA-256"))
    >>> sorted(options)  # doctest: +NORMALIZE_WHITESPACE
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username',
     'security_protocol', 'ssl_context']
    >>> options["security_protocol"], options["sasl_mechanism"]
    ('SASL_SSL', 'SCRAM-SHA-256')
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol, **_sasl(settings)}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of aiokafka's clients (the dashboard's consumers).

    aiokafka takes the same names as kafka-python for these; it needs the TLS context
    object (it has no ``ssl_cafile``), which both get here.

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> aiokafka_options(Settings())
    {'security_protocol': 'PLAINTEXT'}
    """
    return {"security_protocol": "PLAINTEXT", **kafka_python_options(settings)}


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the transport settings (``None``: plaintext).

    Faust turns them into its aiokafka consumer's and producer's ``security_protocol``,
    ``ssl_context`` and SASL options.

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> faust_credentials(Settings()) is None
    True
    >>> credentials = faust_credentials(Settings(
    ...     kafka_security_protocol="SASL_SSL", kafka_sasl_username="crm",
    ...     kafka_sasl_password="secret"))
    >>> credentials.protocol.value, credentials.mechanism.value, credentials.username
    ('SASL_SSL', 'SCRAM-SHA-512', 'crm')
    """
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol == "SSL":
        return SSLCredentials(context)
    if protocol.startswith("SASL_"):
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return None


def kafka_environment(settings: Settings) -> dict[str, str]:
    """The ``CRM_KAFKA_*`` variables that give another process (the worker's ``/health``
    sidecar) these Kafka settings, secrets included: for a child's environment only.

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> kafka_environment(Settings())["CRM_KAFKA_SECURITY_PROTOCOL"]
    'PLAINTEXT'
    """
    env = {}
    for name in type(settings).model_fields:
        if name.startswith("kafka_"):
            value = getattr(settings, name)
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            env[f"CRM_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


def redis_client_url(settings: Settings) -> str:
    """``CRM_REDIS_URL`` with ``CRM_REDIS_USERNAME``/``CRM_REDIS_PASSWORD`` as its user and
    the ``CRM_REDIS_SSL_*`` files as redis-py URL parameters (certificates are always
    verified over ``rediss://``).

    Examples
    --------
    >>> from crmstream.streams.settings import Settings
    >>> redis_client_url(Settings(redis_url="redis://cache:6379/0"))
    'redis://cache:6379/0'
    >>> redis_client_url(Settings(redis_url="rediss://cache:6380/0", redis_username="crm",
    ...     redis_password="p@ss/word", redis_ssl_cafile="/etc/ssl/certs"))
    'rediss://crm:p%40ss%2Fword@cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fssl%2Fcerts'
    """
    url = settings.redis_url
    username = settings.redis_username
    password = settings.redis_password.get_secret_value()
    parts = urlsplit(url)
    if username or password:
        host = parts.netloc.rpartition("@")[2]
        user = quote(username or parts.username or "", safe="")
        secret = quote(password, safe="") if password else (parts.password or "")
        credentials = f"{user}:{secret}" if secret else user
        parts = parts._replace(netloc=f"{credentials}@{host}")
    if parts.scheme.startswith("rediss"):
        query: dict[str, str] = {"ssl_cert_reqs": "required"}
        if settings.redis_ssl_cafile:
            query["ssl_ca_certs"] = settings.redis_ssl_cafile
        if settings.redis_ssl_certfile:
            query["ssl_certfile"] = settings.redis_ssl_certfile
            query["ssl_keyfile"] = settings.redis_ssl_keyfile
        extra = urlencode(query)
        parts = parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra)
    return parts.geturl()
