"""A local certificate authority, the counterpart of Strimzi's cluster CA and the user operator's certificates.

Everything is PEM so that neither side needs keytool: librdkafka reads `<stem>.crt` / `<stem>.key`, the JVM
reads `<stem>.keystore.pem` (private key followed by the chain) with `ssl.keystore.type=PEM` and the CA with
`ssl.truststore.type=PEM`. Keys are unencrypted PKCS#8 files readable by the owner only, like the `user.key`
that Strimzi puts in a user's secret.

Files are reused across starts: a certificate is issued again only when it is missing, about to expire, no
longer signed by the CA, or names something else than what is asked for now.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)  # a certificate this close to expiry is issued again at start
_CLOCK_SKEW = dt.timedelta(minutes=5)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically to a file only the owner can read (keys, passwords, client configs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # the umask can only remove bits, but an existing tmp file keeps its old mode
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: generated in microseconds, and both the JVM and OpenSSL (librdkafka) speak it.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _san(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def _general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


@dataclass(frozen=True)
class IssuedCert:
    """The files of one certificate: what a TLS client or server is configured with."""

    common_name: str
    cert: Path  # the leaf certificate (PEM)
    key: Path  # its private key (PKCS#8 PEM, owner-only)
    keystore: Path  # key + leaf + CA in one PEM file, for `ssl.keystore.type=PEM`
    created: bool  # issued by this call (False: the existing files were still good)


class CertificateAuthority:
    """A self-signed CA kept in `directory` (`ca.crt`, `ca.key`), created on first use and reused after."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.cert_path = directory / "ca.crt"
        self.key_path = directory / "ca.key"
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert: x509.Certificate | None = None

    def ensure(self) -> bool:
        """Load the CA, or create it when missing or expiring; True when a new CA was made."""
        if self.cert_path.is_file() and self.key_path.is_file():
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if (
                isinstance(key, ec.EllipticCurvePrivateKey)
                and cert.not_valid_after_utc - RENEW_BEFORE > _now()
            ):
                self._cert, self._key = cert, key
                return False
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "headwater"),
                x509.NameAttribute(NameOID.COMMON_NAME, self.name),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.key_path, _key_pem(key))
        self.cert_path.write_bytes(_cert_pem(cert))
        self._cert, self._key = cert, key
        return True

    @property
    def certificate(self) -> x509.Certificate:
        if self._cert is None:
            self.ensure()
        assert self._cert is not None
        return self._cert

    def _signed_by_me(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        *,
        hosts: Iterable[str] = (),
        server: bool = False,
    ) -> IssuedCert:
        """Issue (or reuse) `<stem>.crt/.key/.keystore.pem` in `directory` for subject `CN=<common_name>`.

        `hosts` become subject alternative names (DNS names or IP addresses); `server` adds the serverAuth
        usage next to clientAuth (a broker is both: it serves clients and talks to its controller).
        """
        hosts = tuple(hosts)
        files = IssuedCert(
            common_name=common_name,
            cert=directory / f"{stem}.crt",
            key=directory / f"{stem}.key",
            keystore=directory / f"{stem}.keystore.pem",
            created=False,
        )
        if all(p.is_file() for p in (files.cert, files.key, files.keystore)):
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            if (
                _common_name(cert) == common_name
                and _san(cert) == set(hosts)
                and cert.not_valid_after_utc - RENEW_BEFORE > _now()
                and self._signed_by_me(cert)
            ):
                return files
        if self._key is None:
            self.ensure()
        ca_key = self._key
        assert ca_key is not None
        key = _new_key()
        now = _now()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, *([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.certificate.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_general_names(hosts)), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem, cert_pem = _key_pem(key), _cert_pem(cert)
        write_private(files.key, key_pem)
        write_private(files.keystore, key_pem + cert_pem + _cert_pem(self.certificate))
        files.cert.write_bytes(cert_pem)
        return IssuedCert(files.common_name, files.cert, files.key, files.keystore, created=True)
