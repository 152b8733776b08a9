/*
 * The segment rule builder of the console (segments/builder.html).
 *
 * Reads #segment-builder-data (the tenant's fields with operators and value shapes, the
 * pickers' rows, the rule, translated labels, the preview URL), draws the rule as nested
 * AND / OR groups, and writes it back as JSON into the hidden input #id_rules on every
 * change, so the form posts exactly what is on screen. "Preview count" posts the rule to
 * the preview view and shows the count and a sample, or the server's errors next to the
 * condition they name (details.errors[].path, e.g. "conditions[1].value").
 */
(function () {
  "use strict";

  var MAX_DEPTH = 5;
  var dataElement = document.getElementById("segment-builder-data");
  if (!dataElement) {
    return;
  }
  var data = JSON.parse(dataElement.textContent);
  var L = data.labels;
  var root = document.getElementById("rule-builder");
  var hidden = document.getElementById("id_rules");
  var readonly = root.getAttribute("data-readonly") === "1";
  var fields = {};
  data.fields.forEach(function (field) {
    fields[field.name] = field;
  });
  var rules = normalise(data.rules);

  // --- model --------------------------------------------------------------------------------
  function isGroup(node) {
    return node && Object.prototype.hasOwnProperty.call(node, "conditions");
  }

  function normalise(node) {
    if (!node || typeof node !== "object") {
      return { op: "and", conditions: [] };
    }
    return {
      op: node.op === "or" ? "or" : "and",
      conditions: (node.conditions || []).map(function (child) {
        return isGroup(child) ? normalise(child) : child;
      })
    };
  }

  function operatorOf(field, name) {
    var found = null;
    field.operators.forEach(function (operator) {
      if (operator.operator === name) {
        found = operator;
      }
    });
    return found || field.operators[0];
  }

  function defaultValue(field, shape) {
    switch (shape) {
      case "none":
        return null;
      case "texts":
      case "numbers":
      case "ids":
      case "choices":
        return [];
      case "number_range":
      case "date_range":
        return [null, null];
      case "days":
        return 30;
      case "choice":
        return field.choices && field.choices.length ? field.choices[0].value : "";
      case "event":
        return { type: data.event_types[0] || "", count: 1, within_days: 30 };
      default:
        return "";
    }
  }

  function newCondition() {
    var field = data.fields[0];
    var operator = field.operators[0];
    return { field: field.name, operator: operator.operator, value: defaultValue(field, operator.value) };
  }

  function sync() {
    hidden.value = JSON.stringify(rules);
  }

  // --- DOM helpers --------------------------------------------------------------------------
  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      var value = attributes[key];
      if (value === null || value === undefined || value === false) {
        return;
      }
      if (key === "text") {
        node.textContent = value;
      } else if (key.indexOf("on") === 0) {
        node.addEventListener(key.slice(2), value);
      } else {
        node.setAttribute(key, value === true ? "" : value);
      }
    });
    (children || []).forEach(function (child) {
      if (child) {
        node.appendChild(child);
      }
    });
    if (readonly && ["INPUT", "SELECT", "BUTTON"].indexOf(node.tagName) >= 0) {
      node.disabled = true;
    }
    return node;
  }

  function select(options, current, onChange, attributes) {
    var node = el("select", attributes || {});
    options.forEach(function (option) {
      if (option.group !== undefined) {
        var group = el("optgroup", { label: option.group });
        option.options.forEach(function (inner) {
          group.appendChild(optionNode(inner, current));
        });
        node.appendChild(group);
      } else {
        node.appendChild(optionNode(option, current));
      }
    });
    node.addEventListener("change", function () {
      onChange(node);
    });
    return node;
  }

  function optionNode(option, current) {
    var selected = Array.isArray(current)
      ? current.map(String).indexOf(String(option.value)) >= 0
      : String(current) === String(option.value);
    return el("option", { value: String(option.value), selected: selected, text: option.label });
  }

  function selectedValues(node, options) {
    var byText = {};
    options.forEach(function (option) {
      byText[String(option.value)] = option.value;
    });
    return Array.prototype.filter
      .call(node.options, function (option) {
        return option.selected;
      })
      .map(function (option) {
        return Object.prototype.hasOwnProperty.call(byText, option.value) ? byText[option.value] : option.value;
      });
  }

  function numberOrText(text) {
    if (text === "" || text === null || text === undefined) {
      return null;
    }
    var number = Number(text);
    return isNaN(number) ? text : number;
  }

  function splitList(text) {
    return text
      .split(/[,，;；\n]/)
      .map(function (part) {
        return part.trim();
      })
      .filter(function (part) {
        return part !== "";
      });
  }

  function childPath(path, index) {
    return (path ? path + "." : "") + "conditions[" + index + "]";
  }

  // --- groups -------------------------------------------------------------------------------
  function groupNode(group, path, depth, parent, index) {
    var head = el("div", { class: "sb-group-head" }, [
      el("span", { class: "sb-op", text: L.match }),
      select(
        [
          { value: "and", label: L.and },
          { value: "or", label: L.or }
        ],
        group.op,
        function (node) {
          group.op = node.value;
          sync();
        },
        { "data-role": "op", "aria-label": L.match }
      ),
      parent
        ? el("button", {
            type: "button",
            class: "sb-link",
            "data-role": "remove-group",
            text: L.remove_group,
            onclick: function () {
              parent.conditions.splice(index, 1);
              render();
            }
          })
        : null
    ]);
    var box = el("div", { class: "sb-group", "data-path": path, "data-depth": String(depth) }, [head]);
    group.conditions.forEach(function (child, childIndex) {
      var nextPath = childPath(path, childIndex);
      box.appendChild(
        isGroup(child)
          ? groupNode(child, nextPath, depth + 1, group, childIndex)
          : conditionNode(child, nextPath, group, childIndex)
      );
    });
    if (!group.conditions.length) {
      box.appendChild(el("div", { class: "sb-help", text: parent ? L.empty_group : L.everyone }));
    }
    box.appendChild(el("div", { class: "sb-error", "data-error-for": path }));
    var foot = el("div", { class: "sb-group-foot" }, [
      el("button", {
        type: "button",
        class: "sb-button",
        "data-role": "add-condition",
        text: "+ " + L.add_condition,
        onclick: function () {
          group.conditions.push(newCondition());
          render();
        }
      }),
      depth < MAX_DEPTH
        ? el("button", {
            type: "button",
            class: "sb-button",
            "data-role": "add-group",
            text: "+ " + L.add_group,
            onclick: function () {
              group.conditions.push({ op: group.op === "and" ? "or" : "and", conditions: [newCondition()] });
              render();
            }
          })
        : null
    ]);
    box.appendChild(foot);
    return box;
  }

  // --- conditions ---------------------------------------------------------------------------
  function fieldOptions() {
    var groups = [];
    var byCategory = {};
    data.fields.forEach(function (field) {
      if (!byCategory[field.category]) {
        byCategory[field.category] = { group: field.category_label, options: [] };
        groups.push(byCategory[field.category]);
      }
      byCategory[field.category].options.push({ value: field.name, label: field.label });
    });
    return groups;
  }

  function conditionNode(condition, path, parent, index) {
    var field = fields[condition.field];
    var row = el("div", { class: "sb-condition", "data-path": path });
    if (!field) {
      row.appendChild(el("span", { class: "sb-error", text: L.unknown_field + " " + condition.field }));
      row.appendChild(removeButton(parent, index));
      return row;
    }
    var operator = operatorOf(field, condition.operator);
    if (operator.operator !== condition.operator) {
      condition.operator = operator.operator;
      condition.value = defaultValue(field, operator.value);
    }
    row.appendChild(
      select(fieldOptions(), field.name, function (node) {
        var next = fields[node.value];
        condition.field = next.name;
        condition.operator = next.operators[0].operator;
        condition.value = defaultValue(next, next.operators[0].value);
        render();
      }, { "data-role": "field", "aria-label": L.field })
    );
    row.appendChild(
      select(
        field.operators.map(function (op) {
          return { value: op.operator, label: op.label };
        }),
        operator.operator,
        function (node) {
          var next = operatorOf(field, node.value);
          if (next.value !== operator.value) {
            condition.value = defaultValue(field, next.value);
          }
          condition.operator = next.operator;
          render();
        },
        { "data-role": "operator", "aria-label": L.operator }
      )
    );
    row.appendChild(valueEditor(field, operator.value, condition));
    row.appendChild(removeButton(parent, index));
    row.appendChild(el("div", { class: "sb-error", "data-error-for": path }));
    if (field.help_text) {
      row.title = field.help_text;
    }
    return row;
  }

  function removeButton(parent, index) {
    return el("button", {
      type: "button",
      class: "sb-link",
      "data-role": "remove-condition",
      "aria-label": L.remove,
      text: "✕",
      onclick: function () {
        parent.conditions.splice(index, 1);
        render();
      }
    });
  }

  function input(type, value, onInput, attributes) {
    var node = el("input", Object.assign({ type: type, value: value === null || value === undefined ? "" : String(value) }, attributes || {}));
    node.addEventListener("input", function () {
      onInput(node.value);
      sync();
    });
    return node;
  }

  function valueEditor(field, shape, condition) {
    var box = el("span", { class: "sb-value", "data-role": "value", "data-shape": shape });
    var set = function (value) {
      condition.value = value;
    };
    var value = condition.value;
    switch (shape) {
      case "none":
        break;
      case "text":
        box.appendChild(input("text", value, set, { "aria-label": L.value }));
        break;
      case "texts":
        box.appendChild(
          input("text", (value || []).join(", "), function (text) {
            set(splitList(text));
          }, { placeholder: L.comma_separated, "aria-label": L.value })
        );
        break;
      case "numbers":
        box.appendChild(
          input("text", (value || []).join(", "), function (text) {
            set(splitList(text).map(numberOrText));
          }, { placeholder: L.comma_separated, "aria-label": L.value })
        );
        break;
      case "number":
        box.appendChild(input("number", value, function (text) {
          set(numberOrText(text));
        }, { step: "any", "aria-label": L.value }));
        break;
      case "days":
        box.appendChild(input("number", value, function (text) {
          set(numberOrText(text));
        }, { min: "0", step: "1", "aria-label": L.days }));
        box.appendChild(el("span", { text: L.days }));
        break;
      case "number_range":
      case "date_range":
        var pair = Array.isArray(value) ? value.slice(0, 2) : [null, null];
        var type = shape === "date_range" ? "date" : "number";
        [0, 1].forEach(function (position) {
          box.appendChild(input(type, pair[position], function (text) {
            pair[position] = type === "number" ? numberOrText(text) : text;
            set(pair.slice());
          }, { "aria-label": position ? L.to : L.from }));
          if (!position) {
            box.appendChild(el("span", { text: "–" }));
          }
        });
        set(pair.slice());
        break;
      case "date":
        box.appendChild(input("date", value, set, { "aria-label": L.value }));
        break;
      case "choice":
        box.appendChild(
          select(field.choices || [], value, function (node) {
            set(selectedValues(node, field.choices || [])[0]);
            sync();
          }, { "aria-label": L.value })
        );
        break;
      case "choices":
      case "ids":
        box.appendChild(listEditor(field, shape, condition));
        break;
      case "event":
        box.appendChild(eventEditor(condition));
        break;
      default:
        box.appendChild(input("text", value, set));
    }
    return box;
  }

  function listEditor(field, shape, condition) {
    var options = null;
    if (shape === "ids" && data.pickers[field.picker]) {
      var groups = [];
      var byGroup = {};
      data.pickers[field.picker].forEach(function (row) {
        if (!byGroup[row.group]) {
          byGroup[row.group] = { group: row.group || field.label, options: [] };
          groups.push(byGroup[row.group]);
        }
        byGroup[row.group].options.push({ value: row.id, label: row.label });
      });
      options = groups;
    } else if (field.choices) {
      options = field.choices;
    }
    if (!options) {
      return input("text", (condition.value || []).join(", "), function (text) {
        condition.value = shape === "ids" ? splitList(text).map(numberOrText) : splitList(text);
      }, { placeholder: L.comma_separated, "aria-label": L.value });
    }
    var flat = [];
    options.forEach(function (option) {
      (option.options || [option]).forEach(function (inner) {
        flat.push(inner);
      });
    });
    return select(options, condition.value || [], function (node) {
      condition.value = selectedValues(node, flat);
      sync();
    }, { multiple: true, size: "5", "data-picker": field.picker || "choices", "aria-label": L.value });
  }

  function eventEditor(condition) {
    var value = condition.value && typeof condition.value === "object" ? condition.value : {};
    condition.value = value;
    var box = el("span", { class: "sb-value" });
    var listId = "segment-event-types";
    if (!document.getElementById(listId)) {
      var list = el("datalist", { id: listId });
      data.event_types.forEach(function (type) {
        list.appendChild(el("option", { value: type }));
      });
      document.body.appendChild(list);
    }
    box.appendChild(input("text", value.type, function (text) {
      value.type = text.trim();
    }, { list: listId, placeholder: "order.paid", "data-role": "event-type", "aria-label": L.event_type }));
    if (condition.operator !== "not_since") {
      box.appendChild(input("number", value.count, function (text) {
        value.count = numberOrText(text);
      }, { min: "0", step: "1", "data-role": "event-count", "aria-label": L.times }));
      box.appendChild(el("span", { text: L.times }));
    }
    var mode = value.since ? "since" : value.within_days ? "within" : condition.operator === "not_since" ? "within" : "ever";
    var modes = [
      { value: "within", label: L.within_days },
      { value: "since", label: L.since }
    ];
    if (condition.operator !== "not_since") {
      modes.push({ value: "ever", label: L.ever });
    }
    box.appendChild(
      select(modes, mode, function (node) {
        delete value.within_days;
        delete value.since;
        if (node.value === "within") {
          value.within_days = 30;
        } else if (node.value === "since") {
          value.since = new Date().toISOString().slice(0, 10);
        }
        render();
      }, { "data-role": "event-window", "aria-label": L.window })
    );
    if (mode === "within") {
      box.appendChild(input("number", value.within_days, function (text) {
        value.within_days = numberOrText(text);
      }, { min: "1", step: "1", "data-role": "event-days", "aria-label": L.days }));
      box.appendChild(el("span", { text: L.days }));
    } else if (mode === "since") {
      box.appendChild(input("date", value.since, function (text) {
        value.since = text;
      }, { "data-role": "event-since", "aria-label": L.since }));
    }
    return box;
  }

  // --- errors from the server -----------------------------------------------------------------
  function showErrors(errors) {
    Array.prototype.forEach.call(root.querySelectorAll(".sb-invalid"), function (node) {
      node.classList.remove("sb-invalid");
    });
    Array.prototype.forEach.call(root.querySelectorAll("[data-error-for]"), function (node) {
      node.textContent = "";
    });
    var summary = document.getElementById("rule-errors");
    summary.textContent = "";
    (errors || []).forEach(function (error) {
      var target = findByPath(error.path);
      if (target) {
        target.classList.add("sb-invalid");
        var slot = target.querySelector('[data-error-for="' + target.getAttribute("data-path") + '"]');
        if (slot) {
          slot.textContent = error.message;
          return;
        }
      }
      summary.appendChild(el("div", { text: error.message }));
    });
  }

  function findByPath(path) {
    // "conditions[0].conditions[2].value" → the closest drawn node: the condition or group.
    var candidate = path || "";
    while (true) {
      var node = root.querySelector('[data-path="' + candidate + '"]');
      if (node) {
        return node;
      }
      if (!candidate) {
        return null;
      }
      var cut = candidate.lastIndexOf(".");
      candidate = cut >= 0 ? candidate.slice(0, cut) : "";
    }
  }

  // --- preview --------------------------------------------------------------------------------
  function csrfToken() {
    var field = document.querySelector("[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function preview() {
    sync();
    var count = document.getElementById("preview-count");
    var label = document.getElementById("preview-count-label");
    var table = document.getElementById("preview-sample");
    count.textContent = "…";
    fetch(data.preview_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ rules: rules })
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, body: body };
        });
      })
      .then(function (answer) {
        if (!answer.ok) {
          count.textContent = "";
          label.hidden = true;
          table.hidden = true;
          var details = (answer.body.error && answer.body.error.details) || {};
          showErrors(details.errors || [{ path: "", message: answer.body.error ? answer.body.error.message : L.failed }]);
          return;
        }
        showErrors([]);
        label.hidden = false;
        count.textContent = String(answer.body.count);
        var body = table.querySelector("tbody");
        body.textContent = "";
        answer.body.sample.forEach(function (customer) {
          body.appendChild(
            el("tr", {}, [
              el("td", {}, [el("a", { href: customer.url, text: customer.name })]),
              el("td", { text: customer.owner || "-" }),
              el("td", { text: customer.stage }),
              el("td", { text: customer.source || "-" }),
              el("td", { text: customer.added || "-" })
            ])
          );
        });
        table.hidden = answer.body.sample.length === 0;
      })
      .catch(function () {
        count.textContent = "";
        showErrors([{ path: "", message: L.failed }]);
      });
  }

  // --- the size chart -------------------------------------------------------------------------
  function drawSizes() {
    var element = document.getElementById("segment-size-chart");
    var source = document.getElementById("segment-size-data");
    if (!element || !source || typeof window.echarts === "undefined") {
      return;
    }
    var sizes = JSON.parse(source.textContent);
    var dark = document.documentElement.classList.contains("dark");
    var chart = window.echarts.init(element, dark ? "dark" : null, { renderer: "canvas" });
    chart.setOption({
      backgroundColor: "transparent",
      tooltip: { trigger: "axis" },
      grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: sizes.days, boundaryGap: false },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: L.customers, type: "line", smooth: true, showSymbol: true, symbolSize: 7, areaStyle: { opacity: 0.15 }, data: sizes.sizes }]
    });
    if (typeof window.ResizeObserver !== "undefined") {
      new window.ResizeObserver(function () {
        chart.resize();
      }).observe(element);
    }
  }

  function render() {
    root.textContent = "";
    root.appendChild(groupNode(rules, "", 1, null, 0));
    sync();
  }

  function start() {
    render();
    showErrors(data.errors);
    var button = document.getElementById("preview-button");
    if (button) {
      button.addEventListener("click", preview);
    }
    drawSizes();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
