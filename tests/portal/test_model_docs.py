"""Per-model OpenAPI documents (portal/model_openapi.py, on the schema inferred by
models_app/schema_inference.py), Swagger pages and generated request code (portal/model_docs.py)."""

import ast
import json
import re

import pytest
from django.test import Client
from openapi_spec_validator import validate

from models_app.models import MLModel
from models_app.schema_inference import infer_schema
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload

ALL_TYPES = {
    "age": 42,
    "income": 1234.5,
    "name": "Ana",
    "active": True,
    "tags": ["a", "b"],
    "scores": [1, 2.5],
    "address": {"city": "Recife", "zip": None},
    "nothing": None,
    "matrix": [[1, 2], [3, 4]],
    "mixed": [1, "x"],
    "empty": [],
}


def test_type_inference_covers_every_json_type():
    schema = infer_schema(ALL_TYPES)
    props = schema["properties"]
    assert schema["type"] == "object" and schema["example"] == ALL_TYPES
    assert schema["additionalProperties"] is True and "passed to the model unchanged" in schema["description"]
    assert props["age"] == {"type": "integer"}
    assert props["income"] == {"type": "number"}
    assert props["name"] == {"type": "string"}
    assert props["active"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "array", "items": {"type": "number"}}
    assert props["address"]["type"] == "object" and props["address"]["properties"]["city"] == {
        "type": "string"
    }
    assert props["address"]["properties"]["zip"]["nullable"] is True
    assert props["nothing"]["nullable"] is True and "type" not in props["nothing"]
    assert props["matrix"]["items"] == {"type": "array", "items": {"type": "integer"}}
    assert props["mixed"]["items"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["empty"] == {"type": "array", "items": {}}
    assert set(schema["required"]) == set(ALL_TYPES)


@pytest.mark.parametrize(
    "example",
    [
        ALL_TYPES,
        {},
        {"a": {}},
        {"m": [{"a": 1}, {"b": 2}]},
        {"m": [[1], [2.5]]},
        {"m": [{"v": 1}, {"v": "x"}]},
        {"m": [1, 2.5, None]},
        {"m": [[], [1], None]},
        {"m": [{"a": [1, None]}, {"a": ["s"]}, {"a": None}]},
        [1, "x", None, [1], {"a": None}, {"a": 3, "b": True}],
    ],
)
def test_an_inferred_schema_is_valid_openapi_and_accepts_its_own_example(example):
    from openapi_schema_validator import OAS30Validator

    schema = infer_schema(example)
    shown = schema.pop("example")
    OAS30Validator.check_schema(schema)
    OAS30Validator(schema).validate(shown)
    assert "required" not in schema or schema["required"]  # OpenAPI 3.0: a non-empty list or none


def test_items_that_are_objects_require_only_the_keys_every_one_has():
    items = infer_schema({"m": [{"a": 1, "b": 2}, {"a": 3}]})["properties"]["m"]["items"]
    assert items["required"] == ["a"] and set(items["properties"]) == {"a", "b"}


@pytest.fixture
def sync_model(cast):
    payload = sync_payload(schema=file("schema.json", json.dumps(ALL_TYPES)))
    model = MLModel.objects.get(
        hash=api_client(cast.owner).post("/api/v1/models", payload, format="multipart").json()["hash"]
    )
    MLModel.objects.filter(pk=model.pk).update(
        status="Deployed", deployed_build=1, smoke_result={"pred": 1, "proba": 0.25}
    )
    model.refresh_from_db()
    return model


@pytest.fixture
def async_model(cast):
    payload = sync_payload(operation="Async", schema=None, input_type="parquet", name="Batch")
    model = MLModel.objects.get(
        hash=api_client(cast.owner).post("/api/v1/models", payload, format="multipart").json()["hash"]
    )
    MLModel.objects.filter(pk=model.pk).update(status="Deployed", deployed_build=1)
    model.refresh_from_db()
    return model


def test_sync_document_is_valid_and_describes_only_this_model(cast, sync_model):
    response = api_client(cast.teammate).get(f"/api/v1/models/{sync_model.hash}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert set(document["paths"]) == {
        f"/api/v1/run/{sync_model.hash}",
        f"/api/v1/run/{sync_model.hash}/health",
    }
    operation = document["paths"][f"/api/v1/run/{sync_model.hash}"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["example"] == ALL_TYPES and body["properties"]["age"] == {"type": "integer"}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["example"] == {"pred": 1, "proba": 0.25}
    assert answer["properties"] == {"pred": {"type": "integer"}, "proba": {"type": "number"}}
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404", "409", "422", "503", "504"}
    assert document["components"]["securitySchemes"] == {
        "GroupToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The group token of the model's group.",
        }
    }
    assert operation["security"] == [{"GroupToken": []}]
    assert document["servers"] == [{"url": "http://testserver"}]
    assert "/api/v1/groups" not in json.dumps(document)


def test_async_document_describes_upload_status_and_result(cast, async_model):
    document = api_client(cast.owner).get(f"/api/v1/models/{async_model.hash}/openapi.json").json()
    validate(document)
    base = f"/api/v1/run/{async_model.hash}"
    assert set(document["paths"]) == {
        base,
        f"{base}/health",
        f"{base}/executions",
        f"{base}/executions/{{execution_id}}",
        f"{base}/executions/{{execution_id}}/log",
        f"{base}/executions/{{execution_id}}/result",
        f"{base}/executions/{{execution_id}}/input",
    }
    upload = document["paths"][base]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["format"] == "binary"
    assert "parquet" in upload["schema"]["properties"]["file"]["description"]
    assert upload["encoding"]["file"]["contentType"] == "application/vnd.apache.parquet"
    assert "202" in document["paths"][base]["post"]["responses"]
    assert all(
        p.get("name") != "model_hash"
        for item in document["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
    )


def test_both_documents_require_the_request_body(cast, async_model, sync_model):
    # An Async call without its file is a 400, as a Sync call without its body.
    for model in (async_model, sync_model):
        document = api_client(cast.owner).get(f"/api/v1/models/{model.hash}/openapi.json").json()
        validate(document)
        assert document["paths"][f"/api/v1/run/{model.hash}"]["post"]["requestBody"]["required"] is True


def test_the_model_documents_list_the_error_answers_too(cast, async_model):
    document = api_client(cast.owner).get(f"/api/v1/models/{async_model.hash}/openapi.json").json()
    base = f"/api/v1/run/{async_model.hash}/executions"
    for path in (base, f"{base}/{{execution_id}}", f"{base}/{{execution_id}}/log"):
        assert {"401", "403", "404"} <= set(document["paths"][path]["get"]["responses"]), path
    listing = document["paths"][base]["get"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert listing == {"$ref": "#/components/schemas/Error"} and "Error" in document["components"]["schemas"]


def test_async_document_describes_downloading_the_input(cast, async_model):
    # docs/executions.md documents GET .../executions/<n>/input: the model's own document too.
    document = api_client(cast.owner).get(f"/api/v1/models/{async_model.hash}/openapi.json").json()
    validate(document)
    base = f"/api/v1/run/{async_model.hash}/executions/{{execution_id}}"
    download, result = document["paths"][f"{base}/input"]["get"], document["paths"][f"{base}/result"]["get"]
    assert download["security"] == result["security"] == [{"GroupToken": []}]
    assert download["parameters"] == result["parameters"]
    assert download["responses"]["200"] == result["responses"]["200"]  # the file, as an attachment
    assert "retention policy" in download["responses"]["404"]["description"]


def test_an_answer_schema_says_nothing_about_passing_fields_to_the_model(cast):
    # The note is about requests: an answer is what the model made, nothing is passed on.
    answer = {"pred": 1, "detail": {"why": "x"}, "rows": [{"a": 1}, {"a": 2, "b": None}]}
    payload = sync_payload(schema=file("schema.json", json.dumps({"x": {"y": 1}})))
    model = MLModel.objects.get(
        hash=api_client(cast.owner).post("/api/v1/models", payload, format="multipart").json()["hash"]
    )
    MLModel.objects.filter(pk=model.pk).update(status="Deployed", deployed_build=1, smoke_result=answer)
    document = api_client(cast.owner).get(f"/api/v1/models/{model.hash}/openapi.json").json()
    validate(document)
    operation = document["paths"][f"/api/v1/run/{model.hash}"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["example"] == answer and schema["description"].startswith("Inferred from the answer")
    assert "passed to the model" not in json.dumps(schema)
    assert schema["properties"]["detail"]["additionalProperties"] is True  # other answers may carry more
    assert schema["properties"]["rows"]["items"]["required"] == ["a"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "passed to the model unchanged" in body["properties"]["x"]["description"]  # requests keep it
    assert "description" not in infer_schema({"a": {"b": [{}]}}, request=False)["properties"]["a"]


def test_outsider_cannot_read_any_document_of_the_model(cast, sync_model):
    outsider = api_client(cast.outsider)
    assert outsider.get(f"/api/v1/models/{sync_model.hash}/openapi.json").status_code == 404
    assert outsider.get(f"/api/v1/models/{sync_model.hash}/code").status_code == 404
    client = Client()
    client.login(username="outsider", password=PASSWORD)
    assert client.get(f"/models/{sync_model.hash}/docs/").status_code == 404
    # The platform's global document names no model.
    assert (
        sync_model.hash not in Client().get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    )


def test_swagger_page_is_offline_and_points_at_the_model_document(cast, sync_model):
    client = Client()
    assert client.get(f"/models/{sync_model.hash}/docs/").status_code == 302  # log in first
    client.login(username="teammate", password=PASSWORD)
    html = client.get(f"/models/{sync_model.hash}/docs/").content.decode()
    assert f"/api/v1/models/{sync_model.hash}/openapi.json" in html
    # A way back to the portal, and a title of its own beside the model page's tab.
    assert f'<a href="/models/{sync_model.hash}/" id="back-to-model">' in html
    assert f"<title>Swagger page · {sync_model.name} · Neomaril</title>" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # Every script, style and link from this server (a bare "cdn" test failed on a CSRF
    # token that happened to contain those letters).
    addresses = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert addresses and all(a.startswith(("/", "#")) for a in addresses), addresses
    assert "https://" not in html and "//cdn" not in html.lower()


def test_describe_links_to_docs_and_run_url(cast, sync_model):
    body = api_client(cast.owner).get(f"/api/v1/models/{sync_model.hash}").json()
    assert body["docs_url"] == f"http://testserver/models/{sync_model.hash}/docs/"
    assert body["run_url"] == f"http://testserver/api/v1/run/{sync_model.hash}"


def test_generated_code_reads_the_token_from_the_environment(cast, sync_model):
    code = api_client(cast.owner).get(f"/api/v1/models/{sync_model.hash}/code").json()
    assert set(code) == {"curl", "python", "javascript"}
    assert "$NEOMARIL_GROUP_TOKEN" in code["curl"]
    assert 'os.environ["NEOMARIL_GROUP_TOKEN"]' in code["python"]
    assert "process.env.NEOMARIL_GROUP_TOKEN" in code["javascript"]
    for text in code.values():
        assert cast.group_token not in text and f"http://testserver/api/v1/run/{sync_model.hash}" in text
    compile(code["python"], "generated.py", "exec")
    payload_literal = code["python"].split("payload = ", 1)[1].split("\nresponse", 1)[0]
    assert ast.literal_eval(payload_literal) == ALL_TYPES  # the example survives as a Python literal
    only = api_client(cast.owner).get(f"/api/v1/models/{sync_model.hash}/code?language=curl").json()
    assert set(only) == {"curl"}
    bad = api_client(cast.owner).get(f"/api/v1/models/{sync_model.hash}/code?language=cobol")
    assert bad.status_code == 400 and "cobol" in bad.json()["detail"]


def test_async_code_uploads_a_file(cast, async_model):
    code = api_client(cast.owner).get(f"/api/v1/models/{async_model.hash}/code").json()
    assert "-F file=@input.parquet" in code["curl"]
    assert 'files={"file": f}' in code["python"] and "/result" in code["python"]
    compile(code["python"], "generated.py", "exec")


def test_code_as_raw_text_for_curl_into_a_file(cast, sync_model):
    client = api_client(cast.owner)
    url = f"/api/v1/models/{sync_model.hash}/code"
    wrapped = client.get(f"{url}?language=python").json()["python"]
    raw = client.get(f"{url}?language=python&format=text")
    assert raw.status_code == 200 and raw["Content-Type"] == "text/plain; charset=utf-8"
    assert raw.content.decode("utf-8") == wrapped  # the file itself, not a JSON string
    compile(raw.content, "call.py", "exec")
    negotiated = client.get(f"{url}?language=curl", HTTP_ACCEPT="text/plain")
    assert negotiated["Content-Type"] == "text/plain; charset=utf-8"
    assert negotiated.content.decode() == client.get(f"{url}?language=curl").json()["curl"]
    # JSON stays the default, and one file needs one language: the API's error shape says so.
    assert client.get(url)["Content-Type"] == "application/json"
    missing = client.get(f"{url}?format=text")
    assert missing.status_code == 400 and "language=" in missing.json()["detail"]
    assert client.get(f"{url}?language=cobol&format=text").status_code == 400
    assert api_client(cast.outsider).get(f"{url}?language=python&format=text").status_code == 404
    # A format the endpoint does not have is named, not a 404 as if the model were missing.
    unknown = client.get(f"{url}?language=python&format=xml")
    assert unknown.status_code == 406 and unknown["Content-Type"] == "application/json"
    assert "'xml'" in unknown.json()["detail"] and "json, text" in unknown.json()["detail"]
    # So is a media type the Accept header asks for.
    refused = client.get(f"{url}?language=python", HTTP_ACCEPT="application/xml")
    assert refused.status_code == 406 and refused["Content-Type"] == "application/json"
    assert refused.json()["detail"] == (
        "The Accept header asks for application/xml, which this endpoint does not answer: it answers "
        "application/json, text/plain."
    )
