"""Plays the annotator against a running Label Studio through label-studio-sdk.

Runs with the Python of the Label Studio venv (not the test's), called by
tests/test_session_labelstudio.py and by docs/img/labeling_screenshot.js's setup:

    python labelstudio_driver.py URL TOKEN CONFIG.xml TASKS.json IMAGE_DIR ANSWERS.json EXPORT.json

ANSWERS maps vlal_index (as a string) to a class name, or to null for "skip this task".
Prints one JSON line: project id, task ids, what Label Studio stored, versions.
"""

import json
import sys
import urllib.request
from importlib.metadata import version

from label_studio_sdk import LabelStudio


def main():
    url, token, config, tasks_file, image_dir, answers_file, export_file = sys.argv[1:8]
    answers = json.loads(open(answers_file).read())
    ls = LabelStudio(base_url=url, api_key=token)
    project = ls.projects.create(title="vlal round trip", label_config=open(config).read())
    # Local files: Label Studio serves /data/local-files/?d=... only under a registered local storage.
    ls.import_storage.local.create(project=project.id, path=image_dir, title="vlal images", use_blob_urls=False)
    tasks = json.loads(open(tasks_file).read())
    ls.projects.import_tasks(id=project.id, request=tasks)
    stored = list(ls.tasks.list(project=project.id, fields="all"))
    out = {"project": project.id, "n_tasks": len(stored), "tasks": [], "versions": {
        "label-studio": version("label-studio"), "label-studio-sdk": version("label-studio-sdk")}}
    for t in stored:
        i = str(t.data["vlal_index"])
        preds = [p.result[0]["value"]["choices"][0] for p in (t.predictions or [])]
        # the image URL vlal wrote must be served by this server
        req = urllib.request.Request(url + t.data["image"], headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            image_ok = r.status == 200 and r.read(8) == b"\x89PNG\r\n\x1a\n"
        out["tasks"].append({"id": t.id, "vlal_index": int(i), "predictions": preds, "image_ok": image_ok})
        label = answers.get(i)
        if label is None:  # the annotator presses "Skip"
            ls.annotations.create(id=t.id, result=[], was_cancelled=True)
        else:
            ls.annotations.create(id=t.id, was_cancelled=False, result=[
                {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}])
    data = b"".join(ls.projects.exports.download_sync(id=project.id, export_type="JSON", download_all_tasks=True))
    with open(export_file, "wb") as fh:
        fh.write(data)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
