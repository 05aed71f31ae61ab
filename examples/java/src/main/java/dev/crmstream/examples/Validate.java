package dev.crmstream.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.networknt.schema.Error;
import com.networknt.schema.InputFormat;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Validates crmstream input events against the committed JSON Schemas before publishing them.
 *
 * <p>Reads JSON lines {@code {"topic": "crm.purchases", "event": {...}}} from standard input and
 * prints one JSON line per event: {@code {"topic", "event_id", "valid", "errors"}}. Exit code 1 if
 * any event is invalid. An event the schemas in {@code schemas/json/} accept is one the crmstream
 * worker accepts. The argument is the schemas' folder (default {@code schemas/json}).
 */
public final class Validate {
  private static final Map<String, String> SCHEMA_FILES =
      Map.of(
          "crm.purchases", "purchase.json",
          "crm.chats", "chat_message.json",
          "crm.feedback", "feedback.json",
          "crm.customers", "customer_details.json");

  private static final ObjectMapper JSON = new ObjectMapper();

  private final Map<String, Schema> schemas;

  Validate(Path folder) throws IOException {
    SchemaRegistry registry = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12);
    Map<String, Schema> loaded = new HashMap<>();
    for (var entry : SCHEMA_FILES.entrySet()) {
      String text = Files.readString(folder.resolve(entry.getValue()), StandardCharsets.UTF_8);
      loaded.put(entry.getKey(), registry.getSchema(text, InputFormat.JSON));
    }
    this.schemas = Map.copyOf(loaded);
  }

  /** The reasons {@code event} breaks the contract of {@code topic}; empty if it is valid. */
  List<String> check(String topic, JsonNode event) {
    Schema schema = schemas.get(topic);
    if (schema == null) {
      return List.of(topic + " is not a crmstream input topic");
    }
    // Since 2019-09, "format" only annotates unless asked to assert: the worker checks
    // date-times, so the validator must too.
    List<Error> errors =
        schema.validate(
            event.toString(), // Jackson writes a node's JSON text
            InputFormat.JSON,
            context -> context.executionConfig(config -> config.formatAssertionsEnabled(true)));
    List<String> reasons = new ArrayList<>();
    for (Error error : errors) {
      reasons.add(error.toString());
    }
    return reasons;
  }

  public static void main(String[] args) throws IOException {
    Validate validate = new Validate(Path.of(args.length > 0 ? args[0] : "schemas/json"));
    boolean invalid = false;
    var input = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = input.readLine(); line != null; line = input.readLine()) {
      if (line.isBlank()) {
        continue;
      }
      JsonNode record = JSON.readTree(line);
      String topic = record.path("topic").asText();
      JsonNode event = record.path("event");
      List<String> errors = validate.check(topic, event);
      invalid |= !errors.isEmpty();
      ObjectNode verdict = JSON.createObjectNode();
      verdict.put("topic", topic);
      verdict.set("event_id", event.get("event_id")); // null when absent
      verdict.put("valid", errors.isEmpty());
      verdict.putPOJO("errors", errors);
      System.out.println(JSON.writeValueAsString(verdict));
    }
    System.exit(invalid ? 1 : 0);
  }
}
