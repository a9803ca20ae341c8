"""LabelZooLib.client without a server: multipart (no ``cgi``), file names, URLs, TLS, errors."""

import os
import ssl
import urllib.request

import pytest
from LabelZooLib import LabelZooClient, LabelZooLibError, ServerError
from LabelZooLib.client import (
    ROUTES,
    encode_multipart,
    filename_from_disposition,
    normalize_server_url,
    parse_multipart,
    safe_local_name,
)

# bytes that trip naive parsers: CR, LF, CRLF, a fake boundary line, NULs, high bytes
TRICKY = b"\r\n--not-a-boundary\r\n\r\rx\n\n\x00\xff\xfe" + os.urandom(4096) + b"\r\n"


def test_multipart_round_trip_keeps_binary_bytes(tmp_path):
    path = tmp_path / "label.nii.gz"
    path.write_bytes(TRICKY)
    ctype, body = encode_multipart({"params": '{"a": 1}'}, {"label": path})
    fields, files = parse_multipart(body, ctype)
    assert fields == {"params": '{"a": 1}'}
    assert files == {"label": ("label.nii.gz", TRICKY)}


def test_parses_what_the_server_encoder_writes():
    """MONAI Label answers /infer with requests_toolbelt's MultipartEncoder: parse exactly that."""
    from requests_toolbelt import MultipartEncoder

    encoder = MultipartEncoder(fields={
        "params": (None, '{"label_names": {"spleen": 1}}', "application/json"),
        "image": ("case_000.nii.gz", TRICKY, "application/gzip"),
    })
    fields, files = parse_multipart(encoder.to_string(), encoder.content_type)
    assert fields == {"params": '{"label_names": {"spleen": 1}}'}
    assert files["image"] == ("case_000.nii.gz", TRICKY)


def test_parse_multipart_refuses_other_content():
    with pytest.raises(LabelZooLibError, match="expected a multipart answer"):
        parse_multipart(b"{}", "application/json")


def test_client_does_not_use_cgi():
    import LabelZooLib.client as client

    source = open(client.__file__).read()
    assert "import cgi" not in source and "cgi." not in source


@pytest.mark.parametrize(("header", "name"), [
    ('attachment; filename="case_001.nii.gz"', "case_001.nii.gz"),
    ("attachment; filename*=utf-8''ca%20se.nii.gz", "ca se.nii.gz"),
    ("attachment; filename=plain.nrrd", "plain.nrrd"),
    (None, None),
])
def test_filename_from_disposition(header, name):
    assert filename_from_disposition(header) == name


def test_safe_local_name_never_trusts_server_paths():
    assert safe_local_name("case_001", "../../etc/passwd.nii.gz") == "case_001.nii.gz"
    assert safe_local_name("case_001", "x.nrrd") == "case_001.nrrd"
    assert safe_local_name("../evil", "x.sh;rm -rf") == "evil.nii.gz"
    assert safe_local_name("a b/c", None) == "a_b_c.nii.gz"


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000", "ftp://host", "http://", "http://h:1/?q=1"])
def test_bad_server_urls_are_named(url):
    with pytest.raises(LabelZooLibError, match="server URL"):
        normalize_server_url(url)


def test_url_building_quotes_path_parameters():
    client = LabelZooClient(" http://127.0.0.1:8000/ ")
    assert client.server_url == "http://127.0.0.1:8000"
    method, url = client.url_for("infer", {"image": "a b", "x": None}, model="m/1")
    assert (method, url) == ("POST", "http://127.0.0.1:8000/infer/m%2F1?image=a+b")
    with pytest.raises(LabelZooLibError, match="unknown route"):
        client.url_for("delete_everything")
    assert all(path.startswith("/") for _, path in ROUTES.values())


def _https_context(client: LabelZooClient) -> ssl.SSLContext:
    handler = next(h for h in client._opener.handlers if isinstance(h, urllib.request.HTTPSHandler))
    return handler._context


def test_tls_is_verified_by_default():
    context = _https_context(LabelZooClient("https://example.org"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    insecure = _https_context(LabelZooClient("https://example.org", verify=False))
    assert insecure.verify_mode == ssl.CERT_NONE


def test_unreachable_server_is_one_clear_error(free_port):
    client = LabelZooClient(f"http://127.0.0.1:{free_port}", timeout=5)
    with pytest.raises(ServerError, match=f"cannot reach the server at http://127.0.0.1:{free_port}") as e:
        client.info()
    assert e.value.status is None and e.value.method == "GET"


@pytest.fixture
def tls_server(tmp_path):
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate, answering ``GET /info/``."""
    import datetime
    import ipaddress
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = json.dumps({"name": "tls"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file
    finally:
        server.shutdown()
        server.server_close()


def test_tls_certificates_are_checked_against_a_real_https_server(tls_server):
    url, cert_file = tls_server
    with pytest.raises(ServerError, match="CERTIFICATE_VERIFY_FAILED") as e:
        LabelZooClient(url, timeout=10).info()
    assert e.value.status is None
    assert LabelZooClient(url, verify=str(cert_file), timeout=10).info() == {"name": "tls"}
    assert LabelZooClient(url, verify=False, timeout=10).info() == {"name": "tls"}
