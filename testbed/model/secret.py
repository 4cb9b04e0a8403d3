"""v1 Secret, as ValidateSecret checks it: keys are config keys, `data` values are base64, `stringData` is merged
over them (as the API server does on write), and a `kubernetes.io/tls` Secret holds a `tls.crt` and a `tls.key`.
For TLS testbed goes further than the API server, which stores any bytes: the certificate and the key must
parse and belong together, since the proxy would refuse them later and far from the file."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from testbed.errors import show
from testbed.model.meta import Loose, ObjectMeta
from testbed.model.names import At

CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_BYTES = 1024 * 1024  # the API server's limit on a Secret's data
TLS = "kubernetes.io/tls"


def _config_key(key: str) -> str:
    if len(key) > 253 or not CONFIG_KEY.match(key) or key in (".", ".."):
        raise ValueError(f"key {show(key)} must consist of alphanumerics, '-', '_' or '.'")
    return key


def tls_pair(cert_pem: bytes, key_pem: bytes) -> tuple[Any, Any]:
    """The certificate chain and key, parsed; ValueError naming the key (tls.crt or tls.key) that is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise At(("tls.crt",), "is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise At(("tls.key",), "is not an unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(serialization.Encoding.PEM, public) != \
            key.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise At(("tls.key",), "does not belong to the certificate in tls.crt")
    return certs, key


class Secret(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    stringData: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, data: dict[str, str]) -> dict[str, str]:
        for key, value in data.items():
            _config_key(key)
            if not isinstance(value, str):
                raise At((key,), "must be a base64 string")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise At((key,), "is not valid base64") from None
        return data

    @field_validator("stringData")
    @classmethod
    def _keys(cls, data: dict[str, str]) -> dict[str, str]:
        for key, value in data.items():
            _config_key(key)
            if not isinstance(value, str):
                raise At((key,), "must be a string")
        return data

    @model_validator(mode="after")
    def _type(self) -> Secret:
        values = self.values()
        if sum(len(v) for v in values.values()) > MAX_BYTES:
            raise At(("data",), f"holds more than {MAX_BYTES} bytes")
        if self.type == TLS:
            for key in ("tls.crt", "tls.key"):
                if key not in values:
                    raise At(("data", key), f"is required for type {TLS}")
            try:
                tls_pair(values["tls.crt"], values["tls.key"])
            except At as err:
                key = str(err.path[0])
                raise At(("stringData" if key in self.stringData else "data", key), str(err)) from None
        return self

    def values(self) -> dict[str, bytes]:
        """data decoded, with stringData over it."""
        return {**{k: base64.b64decode(v) for k, v in self.data.items()},
                **{k: v.encode() for k, v in self.stringData.items()}}
