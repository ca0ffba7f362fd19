#!/usr/bin/env node
/*
  Reference outputs of @vladmandic/face-api 1.7.15 itself (TensorFlow.js, wasm backend) for the torch ports in
  reenactbook.networks.faceapi. Writes tests/fixtures/faceapi_reference.json: per crop recipe (image path relative
  to REENACTBOOK_SAMPLES + box) the 68 landmarks in image pixels, and for two recipes the 128-d descriptor.
  Only numbers are stored; tests/test_faceapi.py rebuilds the crops from the sample images.

  Set up once, outside the repository (nothing is installed in it):
    mkdir -p /tmp/faceapi-js && cd /tmp/faceapi-js && npm init -y
    npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0 pngjs@7 @vladmandic/face-api@1.7.15
  Run from the repository root (the weights folder is what fetch_faceapi() fills):
    NODE_PATH=/tmp/faceapi-js/node_modules node tools/faceapi_reference.js \
      --samples $REENACTBOOK_SAMPLES --model ~/.cache/reenactbook/weights/face-api --out tests/fixtures/faceapi_reference.json

  Only PNG images are used, so that the decoded pixels are bit-identical to Pillow's.
*/
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const { PNG } = require('pngjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

// crop recipes: box = [x0, y0, x1, y1] in image pixels (fractional on purpose: face-api floors after clipping)
const LANDMARK_RECIPES = [
  { image: 'landmarked/eos/image_0010.png', box: [577.4, 174.6, 943.2, 540.9] },     // square, around the face
  { image: 'landmarked/eos/image_0010.png', box: [600.0, 150.0, 921.0, 520.0] },     // taller than wide
  { image: 'landmarked/mmpose/300w/indoor_020.png', box: [17.49, 169.69, 647.65, 761.42] },  // the annotation's box, wider than tall
  { image: 'landmarked/mmpose/300w/indoor_029.png', box: [223.73, 217.38, 754.97, 788.83] }, // the annotation's box
  { image: 'landmarked/mmpose/300w/indoor_029.png', box: [180.0, 300.0, 800.0, 900.0] },     // runs past the bottom edge
  { image: 'landmarked/mmpose/300w/indoor_029.png', box: [330.0, 320.0, 440.0, 420.0] },     // small, off-centre
];
const DESCRIPTOR_RECIPES = [
  { image: 'landmarked/eos/image_0010.png', box: [577.4, 174.6, 943.2, 540.9] },
  { image: 'landmarked/mmpose/300w/indoor_020.png', box: [17.49, 169.69, 647.65, 761.42] },
];

function argument(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at >= 0 && at + 1 < process.argv.length) return process.argv[at + 1];
  if (fallback === undefined) throw new Error(`missing --${name}`);
  return fallback;
}

function readPng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) {
    rgb[j] = png.data[i]; rgb[j + 1] = png.data[i + 1]; rgb[j + 2] = png.data[i + 2];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], 'int32');
}

function crop(imageTensor, box) {
  const rect = new faceapi.Rect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  const [height, width] = imageTensor.shape;
  const clipped = rect.clipAtImageBorders(width, height);
  return { tensor: tf.slice3d(imageTensor, [clipped.y, clipped.x, 0], [clipped.height, clipped.width, 3]), clipped };
}

const round = (values, digits) => Array.from(values, (v) => Number(v.toFixed(digits)));

async function main() {
  const samples = argument('samples', process.env.REENACTBOOK_SAMPLES);
  const model = argument('model');
  const out = argument('out', 'tests/fixtures/faceapi_reference.json');
  await tf.setBackend('wasm');
  await tf.ready();
  await faceapi.nets.faceLandmark68Net.loadFromDisk(model);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(model);
  const images = {};
  const load = (rel) => { images[rel] = images[rel] || readPng(path.join(samples, rel)); return images[rel]; };

  const landmarks = [];
  for (const recipe of LANDMARK_RECIPES) {
    const { tensor, clipped } = crop(load(recipe.image), recipe.box);
    const relative = (await faceapi.nets.faceLandmark68Net.forward(tensor)).dataSync(); // [0,1] of the crop, x y interleaved
    const points = [];
    for (let i = 0; i < 68; i += 1) {
      points.push(round([clipped.x + relative[2 * i] * clipped.width, clipped.y + relative[2 * i + 1] * clipped.height], 4));
    }
    landmarks.push({ ...recipe, crop: [clipped.x, clipped.y, clipped.width, clipped.height], points });
    tensor.dispose();
  }
  const descriptors = [];
  for (const recipe of DESCRIPTOR_RECIPES) {
    const { tensor, clipped } = crop(load(recipe.image), recipe.box);
    const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tensor);
    descriptors.push({ ...recipe, crop: [clipped.x, clipped.y, clipped.width, clipped.height], descriptor: round(descriptor, 6) });
    tensor.dispose();
  }
  const result = {
    producer: 'tools/faceapi_reference.js',
    package: `@vladmandic/face-api@${faceapi.version}`,
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    note: 'landmarks: 68 (x, y) in image pixels of face-api on the crop of box (clipped to the image, floored: crop = x, y, w, h); '
      + 'descriptors: face_recognition_model on the same kind of crop (padded to square, resized to 150)',
    landmarks,
    descriptors,
  };
  fs.writeFileSync(out, `${JSON.stringify(result)}\n`);
  console.log(`wrote ${out}: ${landmarks.length} landmark crops, ${descriptors.length} descriptors (${tf.getBackend()})`);
}

main().catch((error) => { console.error(error); process.exit(1); });
