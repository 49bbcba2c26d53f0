"""The moderator's page: upload a meme (its caption box is filled by OCR, editable), pick an adapter; see the score,
the text scored and the regions scored."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmf_pe moderator</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; max-width: 60em; }
 label { display: block; margin-top: .8em; font-weight: bold; }
 textarea { width: 100%; height: 4em; }
 #result { margin-top: 1em; font-size: 1.3em; }
 #error { margin-top: 1em; color: #b00020; white-space: pre-wrap; }
 .hateful { color: #b00020; font-weight: bold; } .ok { color: #1b5e20; font-weight: bold; }
 canvas { margin-top: 1em; border: 1px solid #ccc; max-width: 100%; }
 small { color: #555; }
</style></head>
<body>
<h1>Meme moderation</h1>
<form id="form">
 <label for="image">Meme image</label><input type="file" id="image" name="image" accept="image/*">
 <label for="text">Text on the meme (caption / OCR)</label><textarea id="text" name="text"></textarea>
 <small id="ocr-note"></small>
 <label for="adapter">Adapter</label><select id="adapter" name="adapter"></select>
 <p><button type="submit" id="score">Score</button></p>
</form>
<div id="result"></div>
<div id="error"></div>
<canvas id="canvas" width="0" height="0"></canvas>
<p><small>Probability of "hateful" from the chosen adapter's model (its base is named beside it); label at the
adapter's threshold. Boxes: the detected regions the model saw (detector-based bases only).</small></p>
<script>
const $ = (id) => document.getElementById(id);
async function loadAdapters() {
  const r = await fetch('/v1/adapters');
  const data = await r.json();
  const select = $('adapter');
  select.innerHTML = '';
  for (const a of data.adapters) {
    const option = document.createElement('option');
    option.value = a.name;
    const base = a.base ? ', base ' + a.base.name + ' ' + (a.base.encoder || a.base.model) + ' ' +
      a.base.fingerprint.slice(0, 8) : '';
    option.textContent = a.name + ' (' + (a.method || a.training_mode) + ', ' + a.fingerprint.slice(0, 8) + base +
      ')' + (a.accepts_images ? ' - takes images' : ' - precomputed features only');
    if (a.name === data.default) option.selected = true;
    select.appendChild(option);
  }
}
function draw(file, regions) {
  const canvas = $('canvas');
  const image = new Image();
  image.onload = () => {
    canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
    canvas.style.width = Math.max(image.naturalWidth, 480) + 'px';  // small memes shown larger
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    context.lineWidth = Math.max(2, image.naturalWidth / 200);
    context.strokeStyle = '#ff1744';
    for (const [x1, y1, x2, y2] of (regions ? regions.boxes : [])) context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    canvas.dataset.drawn = regions ? regions.boxes.length : 0;
  };
  image.src = URL.createObjectURL(file);
}
// on upload the caption box is filled with the text OCR reads from the image (editable before scoring)
$('image').addEventListener('change', async () => {
  const file = $('image').files[0];
  if (!file) return;
  const body = new FormData();
  body.append('image', file);
  $('ocr-note').textContent = 'Reading the text of the image...';
  $('ocr-note').dataset.state = 'reading';
  try {
    const r = await fetch('/v1/ocr', {method: 'POST', body});
    const data = await r.json();
    if (!r.ok) { $('ocr-note').textContent = 'Type the caption (OCR: ' + data.error + ')'; return; }
    $('text').value = data.text;
    $('ocr-note').textContent = data.text ? 'Caption read from the image (OCR, ' + data.timings_ms.ocr.toFixed(0) +
      ' ms): check and edit it before scoring.' : 'No text found in the image: type the caption, or score on none.';
  } catch (e) {
    $('ocr-note').textContent = 'Type the caption (OCR request failed: ' + e + ')';
  } finally { $('ocr-note').dataset.state = 'done'; }
});
$('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('result').textContent = ''; $('error').textContent = '';
  const file = $('image').files[0];
  if (!file) { $('error').textContent = 'Choose an image first.'; return; }
  const body = new FormData();
  body.append('image', file); body.append('text', $('text').value); body.append('adapter', $('adapter').value);
  $('score').disabled = true;
  try {
    const r = await fetch('/v1/score', {method: 'POST', body});
    const data = await r.json();
    if (!r.ok) { $('error').textContent = 'Error ' + r.status + ': ' + data.error; return; }
    const label = data.label ? '<span class="hateful">hateful</span>' : '<span class="ok">not hateful</span>';
    $('result').innerHTML = 'Score <b id="probability">' + data.probability.toFixed(4) + '</b> &rarr; ' + label +
      ' <small>(threshold ' + data.threshold + ', adapter ' + data.adapter.name + ' ' +
      data.adapter.fingerprint.slice(0, 8) + ', features ' + data.timings_ms.features.toFixed(0) + ' ms, model ' +
      data.timings_ms.model.toFixed(0) + ' ms)</small><br><small>Text scored (' + data.text_source + '): ' +
      '<span id="scored-text"></span>' + (data.note ? ' - ' + data.note : '') + '</small>';
    $('scored-text').textContent = data.text;
    draw(file, data.regions);
  } catch (e) {
    $('error').textContent = 'Request failed: ' + e;
  } finally { $('score').disabled = false; }
});
loadAdapters().catch((e) => { $('error').textContent = 'Cannot list adapters: ' + e; });
</script>
</body></html>
"""
