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
