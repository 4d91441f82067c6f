// The stock JavaScript clients, pointed at Tollgate with a virtual key: the
// OpenAI, Anthropic and Google SDKs and the Vercel AI SDK, as an application
// would use them. Each scenario prints one JSON line: what the client read
// (text, usage as it parsed it) and the gateway's request id, so the test
// (tests/e2e/test_node_clients.py) can hold the record to what the client saw.
// Usage: TOLLGATE_URL=http://127.0.0.1:PORT TOLLGATE_KEY=tg-... node clients.mjs [name...]
import OpenAI, { AzureOpenAI, toFile } from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { GoogleGenAI } from "@google/genai";
import { GoogleGenerativeAI } from "@google/generative-ai";
import { generateText, streamText, embed, generateImage, experimental_transcribe, experimental_generateSpeech } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createAzure } from "@ai-sdk/azure";

const url = process.env.TOLLGATE_URL;
const key = process.env.TOLLGATE_KEY;
const oai = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
// An application written for Azure OpenAI: the gateway as its endpoint.
const azure = new AzureOpenAI({ endpoint: url, apiKey: key, apiVersion: "2024-10-21", maxRetries: 0 });
const claude = new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0 });
const gemini = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: url } });
// Google's legacy SDK (@google/generative-ai, deprecated for @google/genai
// but still in wide use): its answers hide the HTTP response, so the
// request id is read from the last response fetch saw.
let lastId = null;
const fetched = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const r = await fetched(...args);
  lastId = r.headers.get("x-tollgate-request-id");
  return r;
};
const legacy = new GoogleGenerativeAI(key).getGenerativeModel(
  { model: "gemini-2.5-flash", systemInstruction: "Be terse.", generationConfig: { maxOutputTokens: 50 } },
  { baseUrl: url });
// A real 1×1 PNG (the mock refuses an image it cannot read, as OpenAI does).
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const vOpenai = createOpenAI({ baseURL: `${url}/v1`, apiKey: key });
// A PCM WAV (16 kHz mono, 16-bit) of `seconds`: what a recorder writes.
const wav = (seconds) => {
  const data = Math.round(seconds * 16000) * 2;
  const b = Buffer.alloc(44 + data);
  b.write("RIFF", 0); b.writeUInt32LE(36 + data, 4); b.write("WAVEfmt ", 8); b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22); b.writeUInt32LE(16000, 24); b.writeUInt32LE(32000, 28);
  b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34); b.write("data", 36); b.writeUInt32LE(data, 40);
  return b;
};
// The Vercel AI SDK's Azure provider, the gateway as its base URL (its key in `api-key`):
// the Responses API on `/openai/responses`, or Azure's deployment URLs.
const vAzure = createAzure({ baseURL: `${url}/openai`, apiKey: key });
const vAzureDeployments = createAzure({ baseURL: `${url}/openai`, apiKey: key, useDeploymentBasedUrls: true, apiVersion: "2024-10-21" });
const vAnthropic = createAnthropic({ baseURL: `${url}/v1`, apiKey: key });

const id = (headers) => (headers?.get ? headers.get("x-tollgate-request-id") : headers?.["x-tollgate-request-id"]) ?? null;
const say = "Say hello in five words";

const scenarios = {
  async openai_chat() {
    const { data, response } = await oai.chat.completions.create({ model: "default", messages: [{ role: "user", content: say }], max_completion_tokens: 50 }).withResponse();
    return { id: id(response.headers), text: data.choices[0].message.content, input: data.usage.prompt_tokens, output: data.usage.completion_tokens };
  },
  async openai_chat_stream() {
    const { data, response } = await oai.chat.completions
      .create({ model: "default", messages: [{ role: "user", content: say }], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let text = "", usage = null;
    for await (const chunk of data) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    return { id: id(response.headers), text, input: usage.prompt_tokens, output: usage.completion_tokens };
  },
  async openai_responses() {
    const { data, response } = await oai.responses.create({ model: "openai/gpt-5.4", input: say, max_output_tokens: 50 }).withResponse();
    return { id: id(response.headers), text: data.output_text, input: data.usage.input_tokens, output: data.usage.output_tokens };
  },
  async openai_responses_stream() {
    const { data, response } = await oai.responses.create({ model: "openai/gpt-5.4", input: say, stream: true }).withResponse();
    let text = "", usage = null;
    for await (const ev of data) {
      if (ev.type === "response.output_text.delta") text += ev.delta;
      if (ev.type === "response.completed") usage = ev.response.usage;
    }
    return { id: id(response.headers), text, input: usage.input_tokens, output: usage.output_tokens };
  },
  async openai_embeddings() {
    // The Node SDK asks for base64 and decodes it itself.
    const { data, response } = await oai.embeddings.create({ model: "text-embedding-3-small", input: "hello" }).withResponse();
    return { id: id(response.headers), dims: data.data[0].embedding.length, input: data.usage.prompt_tokens, output: 0 };
  },
  async openai_models() {
    const ids = [];
    for await (const m of oai.models.list()) ids.push(m.id);
    return { models: ids };
  },
  async anthropic_messages() {
    const { data, response } = await claude.messages.create({ model: "claude-sonnet-4-6", max_tokens: 50, messages: [{ role: "user", content: say }] }).withResponse();
    return { id: id(response.headers), text: data.content[0].text, input: data.usage.input_tokens, output: data.usage.output_tokens };
  },
  async anthropic_stream() {
    const stream = claude.messages.stream({ model: "claude-sonnet-4-6", max_tokens: 50, messages: [{ role: "user", content: say }] });
    const { response } = await stream.withResponse();
    const msg = await stream.finalMessage();
    return { id: id(response.headers), text: msg.content[0].text, input: msg.usage.input_tokens, output: msg.usage.output_tokens };
  },
  async anthropic_count_tokens() {
    const c = await claude.messages.countTokens({ model: "claude-sonnet-4-6", messages: [{ role: "user", content: say }] });
    return { counted: c.input_tokens };
  },
  async anthropic_models() {
    const ids = [];
    for await (const m of claude.models.list()) ids.push(m.id);
    return { models: ids };
  },
  async gemini_generate() {
    const r = await gemini.models.generateContent({ model: "gemini-2.5-flash", contents: say, config: { maxOutputTokens: 50 } });
    const u = r.usageMetadata;
    return { id: id(r.sdkHttpResponse?.headers), text: r.text, input: u.promptTokenCount, output: u.candidatesTokenCount + (u.thoughtsTokenCount ?? 0) };
  },
  async gemini_stream() {
    let text = "", u = null, rid = null;
    for await (const chunk of await gemini.models.generateContentStream({ model: "gemini-2.5-flash", contents: say })) {
      text += chunk.text ?? "";
      u = chunk.usageMetadata ?? u;
      rid = rid ?? id(chunk.sdkHttpResponse?.headers);
    }
    return { id: rid, text, input: u.promptTokenCount, output: u.candidatesTokenCount + (u.thoughtsTokenCount ?? 0) };
  },
  async gemini_embed() {
    // google-genai's embedContent: :batchEmbedContents, each request naming the model.
    const r = await gemini.models.embedContent({ model: "gemini-embedding-001", contents: ["hello", "world"], config: { outputDimensionality: 8 } });
    return { id: id(r.sdkHttpResponse?.headers), dims: r.embeddings[0].values.length, input: r.usageMetadata.promptTokenCount, output: 0 };
  },
  async gemini_count_tokens() {
    const c = await gemini.models.countTokens({ model: "gemini-2.5-flash", contents: say });
    return { counted: c.totalTokens };
  },
  async azure_chat() {
    const { data, response } = await azure.chat.completions.create({ model: "openai/gpt-5.4", messages: [{ role: "user", content: say }], max_completion_tokens: 50 }).withResponse();
    return { id: id(response.headers), text: data.choices[0].message.content, input: data.usage.prompt_tokens, output: data.usage.completion_tokens };
  },
  async gemini_legacy_generate() {
    const r = await legacy.generateContent(say);
    const u = r.response.usageMetadata;
    return { id: lastId, text: r.response.text(), input: u.promptTokenCount, output: u.candidatesTokenCount + (u.thoughtsTokenCount ?? 0) };
  },
  async gemini_legacy_stream() {
    const r = await legacy.generateContentStream(say);
    let text = "";
    for await (const chunk of r.stream) text += chunk.text();
    const u = (await r.response).usageMetadata;
    return { id: lastId, text, input: u.promptTokenCount, output: u.candidatesTokenCount + (u.thoughtsTokenCount ?? 0) };
  },
  async gemini_legacy_count_tokens() {
    // Always the whole-request form: {generateContentRequest: {model, systemInstruction, generationConfig, contents}}.
    const c = await legacy.countTokens(say);
    return { counted: c.totalTokens };
  },
  async gemini_legacy_embed() {
    const m = new GoogleGenerativeAI(key).getGenerativeModel({ model: "gemini-embedding-001" }, { baseUrl: url });
    const r = await m.batchEmbedContents({ requests: [{ content: { role: "user", parts: [{ text: "hello" }] } }] });
    // (Its types leave the usage out; the answer's JSON is passed on whole.)
    return { id: lastId, dims: r.embeddings[0].values.length, input: r.usageMetadata?.promptTokenCount, output: 0 };
  },
  async gemini_models() {
    const ids = [];
    for await (const m of await gemini.models.list()) ids.push(m.name);
    return { models: ids };
  },
  async vercel_openai_responses() {
    // The AI SDK's default OpenAI model speaks the Responses API.
    const r = await generateText({ model: vOpenai("openai/gpt-5.4"), prompt: say, maxOutputTokens: 50, maxRetries: 0 });
    return { id: id(r.response.headers), text: r.text, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async vercel_openai_chat_stream() {
    const r = streamText({ model: vOpenai.chat("default"), prompt: say, maxRetries: 0 });
    const text = await r.text, usage = await r.usage, response = await r.response;
    return { id: id(response.headers), text, input: usage.inputTokens, output: usage.outputTokens };
  },
  async vercel_anthropic() {
    const r = await generateText({ model: vAnthropic("claude-sonnet-4-6"), prompt: say, maxOutputTokens: 50, maxRetries: 0 });
    return { id: id(r.response.headers), text: r.text, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async vercel_anthropic_stream() {
    const r = streamText({ model: vAnthropic("claude-sonnet-4-6"), prompt: say, maxRetries: 0 });
    const text = await r.text, usage = await r.usage, response = await r.response;
    return { id: id(response.headers), text, input: usage.inputTokens, output: usage.outputTokens };
  },
  async openai_stream_aborted() {
    // The application gives up after the first chunk (an AbortController, as a
    // UI's stop button does): the gateway records what was read, as aborted.
    const controller = new AbortController();
    const { data, response } = await oai.chat.completions
      .create({ model: "default", messages: [{ role: "user", content: say }], stream: true, stream_options: { include_usage: true } },
              { signal: controller.signal, headers: { "x-mock-chunk-delay-ms": "300", "x-mock-output-tokens": "400" } })
      .withResponse();
    let chunks = 0;
    try {
      for await (const _ of data) {
        if (++chunks === 1) controller.abort();
      }
    } catch (e) {
      if (e.name !== "AbortError" && !String(e).includes("abort")) throw e;
    }
    return { id: id(response.headers), chunks };
  },
  async vercel_openai_to_claude() {
    // The AI SDK's OpenAI provider (Responses API) naming a Claude model: translated.
    const r = await generateText({ model: vOpenai("anthropic/claude-sonnet-4-6"), prompt: say, maxOutputTokens: 50, maxRetries: 0 });
    return { id: id(r.response.headers), text: r.text, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async vercel_azure_responses() {
    const r = await generateText({ model: vAzure("openai/gpt-5.4"), prompt: say, maxOutputTokens: 50, maxRetries: 0 });
    return { id: id(r.response.headers), text: r.text, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async vercel_azure_deployment_chat() {
    const r = await generateText({ model: vAzureDeployments.chat("openai/gpt-5.4"), prompt: say, maxOutputTokens: 50, maxRetries: 0 });
    return { id: id(r.response.headers), text: r.text, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async openai_images() {
    const { data, response } = await oai.images.generate({ model: "gpt-image-1.5", prompt: "An otter", size: "1024x1024", quality: "low", n: 2 }).withResponse();
    return { id: id(response.headers), images: data.data.length, input: data.usage.input_tokens, output: data.usage.output_tokens };
  },
  async vercel_image() {
    const r = await generateImage({ model: vOpenai.image("gpt-image-1.5"), prompt: "An otter", size: "1024x1536",
                                    providerOptions: { openai: { quality: "medium" } }, maxRetries: 0 });
    return { id: id(r.responses[0]?.headers), images: r.images.length, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  // Image edits: openai-node's images.edit uploads a multipart form (toFile),
  // the Vercel AI SDK's generateImage with images in its prompt another.
  async openai_image_edit() {
    const image = await toFile(Buffer.from(PNG, "base64"), "otter.png", { type: "image/png" });
    const { data, response } = await oai.images.edit({ model: "gpt-image-1.5", image: [image, image], prompt: "Add a hat", size: "1024x1024", quality: "low" }).withResponse();
    return { id: id(response.headers), images: data.data.length, input: data.usage.input_tokens, output: data.usage.output_tokens };
  },
  async vercel_image_edit() {
    const r = await generateImage({ model: vOpenai.image("gpt-image-1.5"), prompt: { images: [Buffer.from(PNG, "base64")], text: "Add a hat" },
                                    size: "1024x1024", providerOptions: { openai: { quality: "low", inputFidelity: "high" } }, maxRetries: 0 });
    return { id: id(r.responses[0]?.headers), images: r.images.length, input: r.usage.inputTokens, output: r.usage.outputTokens };
  },
  async openai_transcription() {
    const file = await toFile(wav(8.47), "speech.wav", { type: "audio/wav" });
    const { data, response } = await oai.audio.transcriptions
      .create({ model: "whisper-1", file, response_format: "verbose_json", timestamp_granularities: ["word", "segment"] }).withResponse();
    return { id: id(response.headers), text: data.text, seconds: data.usage?.seconds, words: data.words?.length ?? 0 };
  },
  async vercel_transcribe() {
    const r = await experimental_transcribe({ model: vOpenai.transcription("gpt-4o-mini-transcribe"), audio: wav(8.47), maxRetries: 0,
                                              providerOptions: { openai: { prompt: "Names: Ada" } } });
    return { id: id(r.responses[0]?.headers), text: r.text };
  },
  async openai_speech() {
    const { data, response } = await oai.audio.speech
      .create({ model: "gpt-4o-mini-tts", voice: "coral", input: "The quick brown fox jumped over the lazy dog.", instructions: "Cheerful.", response_format: "wav" }).withResponse();
    const audio = new Uint8Array(await data.arrayBuffer());
    return { id: id(response.headers), bytes: audio.length, riff: String.fromCharCode(...audio.slice(0, 4)) };
  },
  async openai_stored() {
    const made = await oai.responses.create({ model: "openai/gpt-5.4", input: say });
    const back = await oai.responses.retrieve(made.id);
    const items = await oai.responses.inputItems.list(made.id);
    const gone = await oai.responses.delete(made.id).then(() => true);
    const conv = await oai.conversations.create({ items: [{ type: "message", role: "user", content: "Hello!" }] });
    const turn = await oai.responses.create({ model: "openai/gpt-5.4", input: "And then?", conversation: conv.id });
    const kept = [];
    for await (const item of oai.conversations.items.list(conv.id, { order: "asc" })) kept.push(item.content[0].text);
    const deleted = (await oai.conversations.delete(conv.id)).deleted;
    return { same: back.output_text === made.output_text, input: items.data.map((i) => i.content[0].text), gone, kept, turn: turn.output_text, deleted };
  },
  async openai_batch() {
    const line = (i) => JSON.stringify({ custom_id: `row-${i}`, method: "POST", url: "/v1/chat/completions",
      body: { model: "gpt-5.4", max_completion_tokens: 20, messages: [{ role: "user", content: `${say} (${i})` }] } });
    const file = await oai.files.create({ file: await toFile(Buffer.from(`${line(0)}\n${line(1)}\n`), "rows.jsonl"), purpose: "batch" });
    const made = await oai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    let b = made;
    for (let i = 0; i < 100 && b.status !== "completed"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      b = await oai.batches.retrieve(made.id);
    }
    const out = (await (await oai.files.content(b.output_file_id)).text()).trim().split("\n").map((l) => JSON.parse(l));
    return { batch: made.id, status: b.status, model: b.model, input: b.usage.input_tokens, output: b.usage.output_tokens,
             team: b.metadata.tollgate_team, rows: out.map((o) => o.custom_id).sort() };
  },
  async openai_background() {
    // openai-node's background mode: created, polled until it ends, then read as a resumed stream.
    const made = await oai.responses.create({ model: "openai/gpt-5.4", input: say, background: true });
    let r = made;
    for (let i = 0; i < 100 && (r.status === "queued" || r.status === "in_progress"); i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await oai.responses.retrieve(made.id);
    }
    let last = null;
    for await (const ev of await oai.responses.retrieve(made.id, { stream: true, starting_after: 1 })) last = ev.type;
    return { response: made.id, queued: made.status, status: r.status, input: r.usage.input_tokens, output: r.usage.output_tokens,
             cached: r.usage.input_tokens_details.cached_tokens, team: r.metadata.tollgate_team, last };
  },
  async vercel_speech() {
    const r = await experimental_generateSpeech({ model: vOpenai.speech("tts-1"), text: "The quick brown fox jumped over the lazy dog.", voice: "alloy", maxRetries: 0 });
    return { id: id(r.responses[0]?.headers), bytes: r.audio.uint8Array.length, mediaType: r.audio.mediaType };
  },
  async vercel_embed() {
    const r = await embed({ model: vOpenai.embedding("text-embedding-3-small"), value: "hello", maxRetries: 0 });
    return { id: id(r.response?.headers), dims: r.embedding.length, input: r.usage.tokens, output: 0 };
  },
};

const wanted = process.argv.slice(2);
for (const [name, run] of Object.entries(scenarios)) {
  if (wanted.length && !wanted.includes(name)) continue;
  try {
    console.log(JSON.stringify({ name, ok: true, ...(await run()) }));
  } catch (e) {
    console.log(JSON.stringify({ name, ok: false, error: String(e?.message ?? e).slice(0, 500), status: e?.status ?? e?.statusCode ?? null }));
  }
}
