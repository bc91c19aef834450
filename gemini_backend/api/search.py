"""Search over your own messages."""
from __future__ import annotations

from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.http import BEARER, Blueprint
from gemini_backend.schemas.search import SearchPageSchema, SearchQuerySchema
from gemini_backend.services import search
from gemini_backend.services.tokens import current_user_id

blp = Blueprint("search", __name__, url_prefix="/search", description="Full-text search over your messages")


@blp.route("")
class Search(MethodView):
    @jwt_required()
    @blp.arguments(SearchQuerySchema, location="query")
    @blp.response(200, SearchPageSchema)
    @document_errors(blp, 401, 422)
    @blp.doc(security=BEARER)
    def get(self, args):
        """Your messages that match, best first, in every room and every branch, with the matches marked.

        `q` takes words (all must match), "quoted phrases", `OR` between two words and -word to leave out; a
        query with no letter or digit finds nothing. Page on with `before` = `next_before`."""
        return search.search(current_user_id(), args["q"], args["limit"], args.get("before"))
